//! kafka-backup-operator: Kubernetes-native backup, restore and consumer-offset management for
//! Apache Kafka, in one process.
//!
//! - [`api`]: the custom resource types of both API versions;
//! - [`manifests`]: the CRDs, webhook configurations and APIService generated from them;
//! - [`server`]: the HTTPS server (webhooks, aggregated API) and the admin server (probes, metrics);
//! - [`certs`]: development CA and serving certificates (`certs` subcommand, `serve` without certs);
//! - [`metrics`]: the Prometheus registry.
//! - [`webhook`]: the admission (`/validate`, `/mutate`) and conversion (`/convert`) webhooks.
//! - [`secrets`]: the Secrets a resource names, from the cluster or from `--secrets-dir`.
//! - [`kafka`]: Kafka client configuration and consumer-group operations (rdkafka).
//! - [`storage`]: storage locations and the formats stored in them.
//! - [`apiserver`]: the aggregated API `catalog.kafka.oso.sh` (offset snapshots and backup sets in
//!   storage, as Kubernetes resources).
//! - [`ops`]: the operations (offset reset, rollback, ...), shared by the reconciler and `run -f`.
//! - [`run`]: `run -f`, one resource executed without Kubernetes.
//! - [`reconciler`]: the in-process reconciler (`serve` in a cluster): controllers, supervised
//!   operations, schedules, Events, leader election.
//! - [`evidence`]: evidence reports of validations: digests, signatures, verification.

pub mod api;
pub mod apiserver;
pub mod certs;
pub mod evidence;
pub mod import;
pub mod kafka;
pub mod manifests;
pub mod metrics;
pub mod ops;
pub mod reconciler;
pub mod routes;
pub mod run;
pub mod secrets;
pub mod server;
pub mod storage;
pub mod webhook;
