//! The real services the test suite runs against are up and behave as the operator relies on:
//! the Kafka broker round-trips a record with its headers, and both object stores honour
//! conditional creates (checkpoints and snapshots depend on them).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the report

mod support;

use std::time::Duration;

use futures::StreamExt;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, aws::AmazonS3Builder, azure::MicrosoftAzureBuilder,
    path::Path,
};
use rdkafka::{
    ClientConfig, Message,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{Consumer, StreamConsumer},
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord},
};

#[tokio::test]
async fn kafka_broker_round_trips_a_record_with_headers() {
    let Some(bootstrap) = support::service("KBO_TEST_KAFKA_BOOTSTRAP") else {
        return;
    };
    let topic = support::unique("services-smoke");
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("admin client");
    let created = admin
        .create_topics(
            &[NewTopic::new(&topic, 2, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .expect("create_topics request");
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "h",
            value: Some("1"),
        })
        .insert(Header {
            key: "h",
            value: None::<&str>,
        });
    let delivery = producer
        .send(
            FutureRecord::to(&topic)
                .partition(1)
                .key("k")
                .payload("v")
                .headers(headers)
                .timestamp(1_700_000_000_000),
            Duration::from_secs(10),
        )
        .await
        .expect("produce");
    assert_eq!((delivery.partition, delivery.offset), (1, 0));

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", support::unique("services-smoke"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&topic]).expect("subscribe");
    let message = tokio::time::timeout(Duration::from_secs(30), consumer.stream().next())
        .await
        .expect("a record within 30 s")
        .expect("stream open")
        .expect("record");
    assert_eq!(message.key(), Some(&b"k"[..]));
    assert_eq!(message.payload(), Some(&b"v"[..]));
    assert_eq!(message.timestamp().to_millis(), Some(1_700_000_000_000));
    let headers = message.headers().expect("headers");
    let seen: Vec<(&str, Option<&[u8]>)> = headers.iter().map(|h| (h.key, h.value)).collect();
    assert_eq!(seen, vec![("h", Some(&b"1"[..])), ("h", None)]);
}

async fn assert_conditional_create(store: &dyn ObjectStore) {
    let path = Path::from(support::unique("services-smoke/object"));
    let create = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    store
        .put_opts(&path, "first".into(), create.clone())
        .await
        .expect("first create");
    let second = store.put_opts(&path, "second".into(), create).await;
    assert!(
        matches!(second, Err(object_store::Error::AlreadyExists { .. })),
        "a second create must be refused, got {second:?}"
    );
    let body = store.get(&path).await.expect("get").bytes().await.expect("body");
    assert_eq!(&body[..], b"first");
    store.delete(&path).await.expect("delete");
}

#[tokio::test]
async fn s3_server_honours_conditional_create() {
    let Some(endpoint) = support::service("KBO_TEST_S3_ENDPOINT") else {
        return;
    };
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} set with the endpoint"));
    let store = AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_bucket_name(env("KBO_TEST_S3_BUCKET"))
        .with_access_key_id(env("KBO_TEST_S3_ACCESS_KEY"))
        .with_secret_access_key(env("KBO_TEST_S3_SECRET_KEY"))
        .with_region(env("KBO_TEST_S3_REGION"))
        .with_allow_http(true)
        .build()
        .expect("S3 store");
    assert_conditional_create(&store).await;
}

#[tokio::test]
async fn azure_server_honours_conditional_create() {
    let Some(_endpoint) = support::service("KBO_TEST_AZURITE_URL") else {
        return;
    };
    // The emulator mode reads AZURITE_BLOB_STORAGE_URL, exported with KBO_TEST_AZURITE_URL.
    let container = std::env::var("KBO_TEST_AZURE_CONTAINER").expect("container set with the endpoint");
    let store = MicrosoftAzureBuilder::new()
        .with_use_emulator(true)
        .with_container_name(container)
        .build()
        .expect("Azure store");
    assert_conditional_create(&store).await;
}
