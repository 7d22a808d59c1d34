//! Paths and names shared by the HTTPS router and the manifest generator, so the two cannot drift.

/// Validating admission webhook (AdmissionReview v1).
pub const VALIDATE_PATH: &str = "/validate";
/// Mutating admission webhook (AdmissionReview v1).
pub const MUTATE_PATH: &str = "/mutate";
/// CRD conversion webhook (ConversionReview v1).
pub const CONVERT_PATH: &str = "/convert";
/// API group of the aggregated catalog API.
pub const CATALOG_GROUP: &str = "catalog.kafka.oso.sh";
/// Version of the aggregated catalog API.
pub const CATALOG_VERSION: &str = "v1alpha1";
/// Resources served by the aggregated catalog API.
pub const CATALOG_RESOURCES: [&str; 2] = ["offsetsnapshots", "backupsets"];
/// Port of the operator's Service in front of the HTTPS server.
pub const SERVICE_PORT: i32 = 443;
