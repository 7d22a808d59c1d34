//! OpenAPI documents of the catalog API, so `kubectl explain offsetsnapshots` works and
//! kube-aggregator can merge the group into the cluster's `/openapi/v2` and `/openapi/v3`.
//!
//! - `GET /openapi/v2`: Swagger 2.0 with `definitions` and the paths;
//! - `GET /openapi/v3`: the index, one entry `apis/catalog.kafka.oso.sh/v1alpha1` whose
//!   `serverRelativeURL` carries a content hash;
//! - `GET /openapi/v3/apis/catalog.kafka.oso.sh/v1alpha1`: OpenAPI 3.0 with `components.schemas`.
//!
//! Each kind's schema carries `x-kubernetes-group-version-kind`, which is how kubectl finds it.
//! The schemas are written here by hand, next to the JSON the handlers produce
//! ([`super::resources`]); a test checks served objects against them.

use std::sync::LazyLock;

use serde_json::{Map, Value, json};

use super::resources::{DIFF_SUBRESOURCE, Resource, group_version};
use crate::routes::{CATALOG_GROUP, CATALOG_VERSION};

/// Prefix of our schema names.
const PREFIX: &str = "sh.oso.kafka.catalog.v1alpha1";

/// The v3 document's path relative to `/openapi/v3/`.
pub fn v3_group_path() -> String {
    format!("apis/{CATALOG_GROUP}/{CATALOG_VERSION}")
}

fn gvk(kind: &str) -> Value {
    json!([{"group": CATALOG_GROUP, "version": CATALOG_VERSION, "kind": kind}])
}

fn name(short: &str) -> String {
    format!("{PREFIX}.{short}")
}

/// The schemas, with references made of `ref_prefix` (`#/definitions/` or
/// `#/components/schemas/`).
pub fn schemas(ref_prefix: &str) -> Map<String, Value> {
    let r = |short: &str| json!({"$ref": format!("{ref_prefix}{}", name(short))});
    let string = |description: &str| json!({"type": "string", "description": description});
    let time =
        |description: &str| json!({"type": "string", "format": "date-time", "description": description});
    let int = |description: &str| json!({"type": "integer", "format": "int64", "description": description});
    let api_version = string(
        "APIVersion defines the versioned schema of this representation of an object: catalog.kafka.oso.sh/v1alpha1.",
    );
    let kind = |k: &str| string(&format!("Kind is the type of the object: {k}."));
    let source = json!({
        "type": "object",
        "description": "The resource that wrote the object.",
        "required": ["kind", "name"],
        "properties": {
            "kind": string("KafkaOffsetRollback, KafkaOffsetReset, KafkaRestore or KafkaBackup."),
            "namespace": string("Its namespace (absent when written by `run -f`)."),
            "name": string("Its name."),
            "uid": string("Its uid (absent when written by `run -f`)."),
        },
    });
    let partition_offset = json!({
        "type": "object",
        "description": "One committed offset.",
        "required": ["offset", "timestamp"],
        "properties": {
            "offset": int("The committed offset: the next record the group reads."),
            "metadata": string("The metadata string committed with it."),
            "timestamp": int("When the offset was read, in epoch milliseconds."),
        },
    });
    let group_offsets = json!({
        "type": "object",
        "description": "The committed offsets of one consumer group.",
        "properties": {
            "topics": {
                "type": "object",
                "description": "Per topic, per partition number (as a string key).",
                "additionalProperties": {"type": "object", "additionalProperties": r("PartitionOffset")},
            },
        },
    });
    let mut out = Map::new();
    out.insert(
        name("ObjectMeta"),
        json!({
            "type": "object",
            "description": "Standard object metadata. The catalog derives it from storage: uid from the storage URI, creationTimestamp from when the snapshot was taken or the backup started.",
            "properties": {
                "name": string("The snapshot id or backup id."),
                "namespace": string("The namespace whose storage locations hold the object."),
                "uid": string("Stable id derived from the namespace and the storage URI."),
                "creationTimestamp": time("When the snapshot was taken or the backup started."),
                "labels": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Derived labels: catalog.kafka.oso.sh/source-kind, source-name, storage, complete."},
                "annotations": {"type": "object", "additionalProperties": {"type": "string"}, "description": "catalog.kafka.oso.sh/location: the storage URI."},
            },
        }),
    );
    out.insert(
        name("ListMeta"),
        json!({
            "type": "object",
            "description": "Standard list metadata.",
            "properties": {
                "resourceVersion": string("Generation of the catalog the list was served from."),
                "continue": string("Token for the next page when `limit` cut the list short."),
            },
        }),
    );
    out.insert(name("SnapshotSource"), source);
    out.insert(name("PartitionOffset"), partition_offset);
    out.insert(name("GroupOffsets"), group_offsets);
    out.insert(
        name("OffsetSnapshot"),
        json!({
            "type": "object",
            "description": "A consumer-offset snapshot stored by the operator (KafkaOffsetRollback snapshots, pre-change snapshots of KafkaOffsetReset and KafkaRestore) in a storage location known to the namespace. Lists show the summary; get adds every offset in `groups`. A user's delete of one snapshot deletes the stored document; deleting the namespace (or a delete while it terminates) never does.",
            "x-kubernetes-group-version-kind": gvk("OffsetSnapshot"),
            "properties": {
                "apiVersion": api_version,
                "kind": kind("OffsetSnapshot"),
                "metadata": r("ObjectMeta"),
                "snapshotId": string("The snapshot id (also the name)."),
                "timestamp": time("When the offsets were captured."),
                "cluster": string("The Kafka cluster the offsets belong to (its bootstrap servers)."),
                "location": string("Storage URI of the snapshot document."),
                "source": r("SnapshotSource"),
                "expiresAt": time("When its retention ends (KafkaRestore `snapshotBeforeRestore.retentionHours`): the operator deletes it at its first catalog refresh after that. Absent: kept until deleted."),
                "summary": {
                    "type": "object",
                    "description": "What the snapshot holds, without the offsets.",
                    "properties": {
                        "groups": int("Consumer groups in the snapshot."),
                        "topics": int("Distinct topics over all groups."),
                        "partitions": int("Partitions with an offset, over all groups."),
                        "groupNames": {"type": "array", "items": {"type": "string"}, "description": "The consumer groups."},
                        "sizeBytes": int("Size of the stored document."),
                    },
                },
                "groups": {
                    "type": "object",
                    "description": "Every group's committed offsets, per topic and partition (get only; lists leave it out).",
                    "additionalProperties": r("GroupOffsets"),
                },
            },
        }),
    );
    out.insert(
        name("OffsetSnapshotList"),
        json!({
            "type": "object",
            "description": "A list of offset snapshots (summaries, no offsets).",
            "x-kubernetes-group-version-kind": gvk("OffsetSnapshotList"),
            "required": ["items"],
            "properties": {
                "apiVersion": string("catalog.kafka.oso.sh/v1alpha1."),
                "kind": kind("OffsetSnapshotList"),
                "metadata": r("ListMeta"),
                "items": {"type": "array", "items": r("OffsetSnapshot")},
            },
        }),
    );
    out.insert(
        name("BackupTopic"),
        json!({
            "type": "object",
            "description": "One topic of a backup.",
            "properties": {
                "name": string("Topic name."),
                "partitions": int("Partitions backed up."),
                "records": int("Records backed up."),
                "bytes": int("Bytes stored."),
            },
        }),
    );
    out.insert(
        name("GroupSnapshotSummary"),
        json!({
            "type": "object",
            "description": "The consumer-group offsets captured with the backup.",
            "properties": {
                "snapshotId": string("The offset snapshot id, when stored as one."),
                "timestamp": time("When the offsets were captured."),
                "groups": {"type": "array", "items": {"type": "string"}, "description": "The groups captured."},
                "partitions": int("Partitions with an offset, over all groups."),
            },
        }),
    );
    out.insert(
        name("BackupSet"),
        json!({
            "type": "object",
            "description": "A backup found in a storage location known to the namespace: what it holds and the valid point-in-time-restore window.",
            "x-kubernetes-group-version-kind": gvk("BackupSet"),
            "properties": {
                "apiVersion": string("catalog.kafka.oso.sh/v1alpha1."),
                "kind": kind("BackupSet"),
                "metadata": r("ObjectMeta"),
                "backupId": string("The backup id (also the name)."),
                "complete": {"type": "boolean", "description": "Whether the backup finished; a running continuous backup is not complete, and neither is a set of the prior art (kafka-backup 0.x), whose manifest cannot prove it."},
                "format": string("Format of the stored set: kafka-backup-operator/backup-set/v1, or kafka-backup/0.x (the prior art; read by restores, validations and the catalog, never written)."),
                "note": string("What the set's format cannot prove (sets of the prior art: completeness)."),
                "location": string("Storage URI of the backup."),
                "cluster": string("The Kafka cluster backed up."),
                "topics": {"type": "array", "items": r("BackupTopic"), "description": "The topics in the backup."},
                "partitions": int("Partitions over all topics."),
                "records": int("Records over all topics."),
                "bytes": int("Bytes stored over all topics."),
                "firstRecordTime": time("Timestamp of the earliest record: the start of the valid point-in-time window."),
                "lastRecordTime": time("Timestamp of the latest record: the end of the valid point-in-time window."),
                "source": r("SnapshotSource"),
                "groupSnapshot": r("GroupSnapshotSummary"),
            },
        }),
    );
    out.insert(
        name("BackupSetList"),
        json!({
            "type": "object",
            "description": "A list of backup sets.",
            "x-kubernetes-group-version-kind": gvk("BackupSetList"),
            "required": ["items"],
            "properties": {
                "apiVersion": string("catalog.kafka.oso.sh/v1alpha1."),
                "kind": kind("BackupSetList"),
                "metadata": r("ListMeta"),
                "items": {"type": "array", "items": r("BackupSet")},
            },
        }),
    );
    out.insert(
        name("OffsetSnapshotDiff"),
        json!({
            "type": "object",
            "description": "An offset snapshot compared with the groups' current committed offsets (the diff subresource).",
            "x-kubernetes-group-version-kind": gvk("OffsetSnapshotDiff"),
            "properties": {
                "apiVersion": string("catalog.kafka.oso.sh/v1alpha1."),
                "kind": kind("OffsetSnapshotDiff"),
                "metadata": r("ObjectMeta"),
                "snapshotId": string("The snapshot compared."),
                "cluster": string("The cluster read."),
                "comparedAt": time("When the current offsets were read."),
                "summary": {
                    "type": "object",
                    "properties": {
                        "groups": int("Groups compared."),
                        "partitions": int("Partitions compared."),
                        "changed": int("Partitions whose committed offset differs from the snapshot."),
                        "missing": int("Partitions with an offset in the snapshot and none now."),
                    },
                },
                "groups": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "group": string("Consumer group."),
                            "partitions": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "properties": {
                                        "topic": string("Topic."),
                                        "partition": {"type": "integer", "format": "int32"},
                                        "snapshotOffset": int("Offset in the snapshot."),
                                        "currentOffset": int("Committed offset now; absent when none is committed."),
                                        "delta": int("currentOffset - snapshotOffset."),
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }),
    );
    out
}

/// Error answers are metav1.Status; described, not referenced, to keep the document self-contained.
fn error_response() -> Value {
    json!({"description": "A metav1.Status describing the error."})
}

fn paths(ref_prefix: &str, v3: bool) -> Map<String, Value> {
    let response = |short: &str| {
        let schema = json!({"$ref": format!("{ref_prefix}{PREFIX}.{short}")});
        if v3 {
            json!({"description": "OK", "content": {"application/json": {"schema": schema}}})
        } else {
            json!({"description": "OK", "schema": schema})
        }
    };
    let param = |name: &str, in_: &str, description: &str| {
        if v3 {
            json!({"name": name, "in": in_, "required": in_ == "path", "description": description, "schema": {"type": "string"}})
        } else {
            json!({"name": name, "in": in_, "required": in_ == "path", "description": description, "type": "string"})
        }
    };
    let list_params = || {
        json!([
            param("labelSelector", "query", "Select objects by label."),
            param(
                "fieldSelector",
                "query",
                "Select objects by field: metadata.name, metadata.namespace and the resource's own."
            ),
            param("limit", "query", "Largest number of objects in one answer."),
            param("continue", "query", "Token from the previous page."),
        ])
    };
    let base = format!("/apis/{}", group_version());
    let mut out = Map::new();
    for resource in Resource::ALL {
        let kind = resource.kind();
        let list = resource.list_kind();
        let plural = resource.plural();
        let gvk_ext = json!({"group": CATALOG_GROUP, "version": CATALOG_VERSION, "kind": kind});
        out.insert(
            format!("{base}/{plural}"),
            json!({"get": {
                "operationId": format!("list{kind}ForAllNamespaces"),
                "description": format!("list {plural} in all namespaces"),
                "parameters": list_params(),
                "responses": {"200": response(list), "default": error_response()},
                "x-kubernetes-action": "list",
                "x-kubernetes-group-version-kind": gvk_ext,
            }}),
        );
        out.insert(
            format!("{base}/namespaces/{{namespace}}/{plural}"),
            json!({
                "parameters": [param("namespace", "path", "The namespace.")],
                "get": {
                    "operationId": format!("listNamespaced{kind}"),
                    "description": format!("list {plural} in a namespace"),
                    "parameters": list_params(),
                    "responses": {"200": response(list), "default": error_response()},
                    "x-kubernetes-action": "list",
                    "x-kubernetes-group-version-kind": gvk_ext,
                },
            }),
        );
        let mut item = json!({
            "parameters": [param("namespace", "path", "The namespace."), param("name", "path", "The object's name.")],
            "get": {
                "operationId": format!("readNamespaced{kind}"),
                "description": format!("read one {}", resource.singular()),
                "responses": {"200": response(kind), "default": error_response()},
                "x-kubernetes-action": "get",
                "x-kubernetes-group-version-kind": gvk_ext,
            },
        });
        if resource == Resource::OffsetSnapshots
            && let Some(map) = item.as_object_mut()
        {
            map.insert(
                "delete".into(),
                json!({
                    "operationId": format!("deleteNamespaced{kind}"),
                    "description": "delete an offset snapshot: deletes the stored document",
                    "responses": {"200": response(kind), "default": error_response()},
                    "x-kubernetes-action": "delete",
                    "x-kubernetes-group-version-kind": gvk_ext,
                }),
            );
            out.insert(
                format!("{base}/namespaces/{{namespace}}/{plural}/{{name}}/{DIFF_SUBRESOURCE}"),
                json!({
                    "parameters": [param("namespace", "path", "The namespace."), param("name", "path", "The snapshot's name.")],
                    "get": {
                        "operationId": "readNamespacedOffsetSnapshotDiff",
                        "description": "compare an offset snapshot with the groups' current committed offsets",
                        "responses": {"200": response("OffsetSnapshotDiff"), "default": error_response()},
                        "x-kubernetes-action": "get",
                        "x-kubernetes-group-version-kind": {"group": CATALOG_GROUP, "version": CATALOG_VERSION, "kind": "OffsetSnapshotDiff"},
                    },
                }),
            );
        }
        out.insert(format!("{base}/namespaces/{{namespace}}/{plural}/{{name}}"), item);
    }
    out
}

fn info() -> Value {
    json!({
        "title": "kafka-backup-operator catalog",
        "description": "Offset snapshots and backup sets found in storage, served by kafka-backup-operator.",
        "version": CATALOG_VERSION,
    })
}

/// `GET /openapi/v2`: the Swagger 2.0 document (serialized once).
pub fn v2() -> &'static [u8] {
    static DOC: LazyLock<Vec<u8>> = LazyLock::new(|| {
        let doc = json!({
            "swagger": "2.0",
            "info": info(),
            "paths": paths("#/definitions/", false),
            "definitions": schemas("#/definitions/"),
        });
        serde_json::to_vec(&doc).unwrap_or_default()
    });
    &DOC
}

/// `GET /openapi/v3/apis/catalog.kafka.oso.sh/v1alpha1`: the OpenAPI 3.0 document (serialized once).
pub fn v3_group() -> &'static [u8] {
    static DOC: LazyLock<Vec<u8>> = LazyLock::new(|| {
        let doc = json!({
            "openapi": "3.0.0",
            "info": info(),
            "paths": paths("#/components/schemas/", true),
            "components": {"schemas": schemas("#/components/schemas/")},
        });
        serde_json::to_vec(&doc).unwrap_or_default()
    });
    &DOC
}

/// Content hash of [`v3_group`], for its `serverRelativeURL` and ETag.
pub fn v3_group_hash() -> &'static str {
    static HASH: LazyLock<String> = LazyLock::new(|| {
        let digest = ring::digest::digest(&ring::digest::SHA512, v3_group());
        digest.as_ref().iter().map(|b| format!("{b:02X}")).collect()
    });
    &HASH
}

/// `GET /openapi/v3`: the index of group-version documents.
pub fn v3_index() -> Value {
    json!({
        "paths": {
            v3_group_path(): {
                "serverRelativeURL": format!("/openapi/v3/{}?hash={}", v3_group_path(), v3_group_hash()),
            },
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn resolve_refs(doc: &Value, prefix: &str) {
        let text = serde_json::to_string(doc).unwrap();
        for part in text.split("\"$ref\":\"").skip(1) {
            let target = part.split('"').next().unwrap();
            let name = target.strip_prefix(prefix).unwrap();
            let defs = if prefix.starts_with("#/definitions") {
                &doc["definitions"]
            } else {
                &doc["components"]["schemas"]
            };
            assert!(defs.get(name).is_some(), "dangling $ref {target}");
        }
    }

    #[test]
    fn documents_parse_and_every_reference_resolves() {
        let v2: Value = serde_json::from_slice(v2()).unwrap();
        resolve_refs(&v2, "#/definitions/");
        let v3: Value = serde_json::from_slice(v3_group()).unwrap();
        resolve_refs(&v3, "#/components/schemas/");
        for kind in [
            "OffsetSnapshot",
            "OffsetSnapshotList",
            "BackupSet",
            "BackupSetList",
        ] {
            let schema = &v3["components"]["schemas"][format!("{PREFIX}.{kind}")];
            assert_eq!(schema["x-kubernetes-group-version-kind"][0]["kind"], kind);
        }
        let index = v3_index();
        let url = index["paths"]["apis/catalog.kafka.oso.sh/v1alpha1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/apis/catalog.kafka.oso.sh/v1alpha1?hash="));
    }
}
