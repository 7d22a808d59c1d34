//! Shared helpers of the integration tests: where the real services are.
//!
//! `.ci/services.sh` starts the Kafka broker, S3 and Azure servers and exports their endpoints as
//! `KBO_TEST_*` variables, plus `KBO_TEST_REQUIRE_SERVICES=1`. With that flag a missing endpoint
//! fails the test; without it (a developer's quick `cargo test`) the test is skipped with a note.

#![allow(dead_code)] // each test binary uses a different subset

/// The value of a service endpoint variable, or `None` when the test should be skipped.
pub fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var("KBO_TEST_REQUIRE_SERVICES").as_deref() == Ok("1") => {
            panic!("{var} is not set although KBO_TEST_REQUIRE_SERVICES=1: the service did not start")
        }
        _ => {
            eprintln!(
                "skipping: {var} not set (run the tests through tests/run-all.sh to start the services)"
            );
            None
        }
    }
}

/// A name unique to this test run, for topics, groups, buckets and prefixes.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{prefix}-{}-{nanos}", std::process::id())
}

/// The `serve` binary and a TLS client for it.
pub mod https;
/// Admission and conversion reviews, and the HTTPS router in-process.
pub mod review;

/// Creates `topic` with `partitions` partitions (replication 1) on the broker at `bootstrap`.
pub async fn create_topic(bootstrap: &str, topic: &str, partitions: i32) {
    use rdkafka::{
        ClientConfig,
        admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
        client::DefaultClientContext,
    };
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .unwrap();
    for r in admin
        .create_topics(
            &[NewTopic::new(topic, partitions, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap()
    {
        r.unwrap();
    }
}
