//! The custom resources of API group `kafka.oso.sh`.
//!
//! Two versions of every kind live side by side, one module each:
//! - [`v1alpha1`]: served, not stored; the compatibility surface that accepts every spelling of the
//!   prior art and of its v1.0.0 release, so existing manifests keep working.
//! - [`v1beta1`]: served and stored (the hub of conversion); one name per concept, RFC 3339 times,
//!   closed enums and CEL rules for cross-field constraints.
//!
//! The CRD manifests in `crds/` are generated from these types (see [`crate::manifests`]).

use k8s_openapi::{
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
    apimachinery::pkg::apis::meta::v1::Condition,
};
use kube::core::{CustomResourceExt, crd::merge_crds};
use schemars::{Schema, SchemaGenerator};

pub mod admission;
pub mod conversion;
pub mod decode;
pub mod v1alpha1;
pub mod v1beta1;
pub mod validation;

/// The API group of every kind.
pub const GROUP: &str = "kafka.oso.sh";
/// The `kubectl get <category>` name that lists all five kinds.
pub const CATEGORY: &str = "kafka-backup";
/// The version stored in etcd and used as the hub of conversion.
pub const STORAGE_VERSION: &str = "v1beta1";
/// The version kept for compatibility with existing manifests.
pub const COMPAT_VERSION: &str = "v1alpha1";
/// Annotation that keeps the v1alpha1 fields v1beta1 cannot represent, so conversion is lossless.
pub const PRESERVED_FIELDS_ANNOTATION: &str = "kafka.oso.sh/v1alpha1-fields";

/// Failure to assemble the multi-version CRD of a kind.
#[derive(Debug, thiserror::Error)]
#[error("failed to merge the versions of CRD {crd}: {source}")]
pub struct CrdError {
    crd: String,
    #[source]
    source: kube::core::crd::MergeError,
}

/// Merges the per-version CRDs of one kind with v1beta1 as the storage version.
fn merged<Alpha: CustomResourceExt, Beta: CustomResourceExt>() -> Result<CustomResourceDefinition, CrdError> {
    merge_crds(vec![Alpha::crd(), Beta::crd()], STORAGE_VERSION).map_err(|source| CrdError {
        crd: Beta::crd_name().to_owned(),
        source,
    })
}

/// The five CRDs, each serving v1alpha1 and v1beta1 with v1beta1 stored.
///
/// The conversion strategy is left to [`crate::manifests`], which knows the Service to point at.
pub fn crds() -> Result<Vec<CustomResourceDefinition>, CrdError> {
    Ok(vec![
        // one line per kind: merged::<v1alpha1::Kind, v1beta1::Kind>()?,
        merged::<v1alpha1::KafkaBackup, v1beta1::KafkaBackup>()?,
        merged::<v1alpha1::KafkaRestore, v1beta1::KafkaRestore>()?,
        merged::<v1alpha1::KafkaOffsetReset, v1beta1::KafkaOffsetReset>()?,
        merged::<v1alpha1::KafkaOffsetRollback, v1beta1::KafkaOffsetRollback>()?,
        merged::<v1alpha1::KafkaBackupValidation, v1beta1::KafkaBackupValidation>()?,
    ])
}

/// Schema of a `conditions` list: a list-map keyed by `type`, as Kubernetes API conventions ask,
/// so server-side apply merges conditions by type instead of replacing the list.
pub fn conditions_schema(generator: &mut SchemaGenerator) -> Schema {
    let mut schema = generator.subschema_for::<Vec<Condition>>();
    schema.insert("x-kubernetes-list-type".into(), "map".into());
    schema.insert("x-kubernetes-list-map-keys".into(), serde_json::json!(["type"]));
    schema
}
