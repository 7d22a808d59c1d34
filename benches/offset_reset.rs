//! Offset reset throughput: 500 consumer groups x 12 partitions (one topic, committed offsets
//! present) reset to earliest with parallelism 1, 10 and 50, in one run, on the broker at
//! `KBO_TEST_KAFKA_BOOTSTRAP` (`.ci/services.sh` starts nisshi). Each round first commits offset 50
//! on every partition of every group with plain rdkafka, then times `offset_reset::execute` (the
//! code `run -f` and the reconciler run), snapshot on local disk included.
//!
//! On loopback there is no round-trip time for parallelism to hide, so a second run puts the broker
//! one simulated network hop away: a dedicated nisshi (`KBO_TEST_NISSHI_BIN`) behind a userspace
//! TCP proxy that holds every chunk for half the round-trip time in each direction (the kernel here
//! has no netem). The broker advertises the proxy's port, so clients stay behind it after bootstrap.
//!
//! `cargo bench --bench offset_reset`; `KBO_BENCH_GROUPS` changes the group count,
//! `KBO_BENCH_RTT_MS` the simulated round trip (default 2 ms).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    io::{Read, Write},
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use kafka_backup_operator::{
    api::v1beta1::{KafkaOffsetReset, Phase},
    ops::{Context, ResourceRef, offset_reset},
    secrets::SecretStore,
    storage::StorageEnv,
};
use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    consumer::{BaseConsumer, CommitMode, Consumer},
    producer::{FutureProducer, FutureRecord},
};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::mpsc,
};

mod support;

const PARTITIONS: i32 = 12;
const RECORDS_PER_PARTITION: i64 = 100;
const COMMITTED: i64 = 50;

fn commit_all(bootstrap: &str, topic: &str, groups: &[String]) {
    std::thread::scope(|scope| {
        for chunk in groups.chunks(groups.len().div_ceil(16).max(1)) {
            scope.spawn(move || {
                for group in chunk {
                    let consumer: BaseConsumer = ClientConfig::new()
                        .set("bootstrap.servers", bootstrap)
                        .set("group.id", group)
                        .create()
                        .unwrap();
                    let mut tpl = TopicPartitionList::new();
                    for p in 0..PARTITIONS {
                        tpl.add_partition_offset(topic, p, Offset::Offset(COMMITTED))
                            .unwrap();
                    }
                    consumer.commit(&tpl, CommitMode::Sync).unwrap();
                }
            });
        }
    });
}

/// Copies `from` to `to`, each chunk written no earlier than `delay` after it was read, in order.
async fn delayed_copy(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send((tokio::time::Instant::now(), buf[..n].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
    });
    while let Some((stamp, chunk)) = rx.recv().await {
        tokio::time::sleep_until(stamp + delay).await;
        if to.write_all(&chunk).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
    reader.abort();
}

/// A TCP proxy on `listener` to `upstream` adding `delay` in each direction.
async fn delay_proxy(listener: tokio::net::TcpListener, upstream: String, delay: Duration) {
    while let Ok((client, _)) = listener.accept().await {
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(&upstream).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            tokio::join!(
                delayed_copy(client_read, server_write, delay),
                delayed_copy(server_read, client_write, delay),
            );
        });
    }
}

/// The bench's own broker, killed on drop.
struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A nisshi listening on a free port and advertising `advertised`.
fn start_broker(bin: &str, advertised: u16) -> (Broker, u16) {
    let port = free_port();
    let child = Command::new(bin)
        .args(["broker", "--listener-url", &format!("tcp://127.0.0.1:{port}")])
        .args([
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{advertised}"),
        ])
        .args([
            "--storage-engine",
            "memory://nisshi/",
            "--group-initial-rebalance-delay",
            "0s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let broker = Broker(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nisshi did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
    (broker, port)
}

/// The median time of 21 ApiVersions (v0) round trips on one connection to `address`.
fn measured_round_trip(address: &str) -> Duration {
    let mut socket = std::net::TcpStream::connect(address).unwrap();
    socket.set_nodelay(true).unwrap();
    let mut times: Vec<Duration> = (0..21i32)
        .map(|correlation| {
            // size, api key 18, version 0, correlation id, null client id; no body.
            let mut frame = 10i32.to_be_bytes().to_vec();
            frame.extend_from_slice(&18i16.to_be_bytes());
            frame.extend_from_slice(&0i16.to_be_bytes());
            frame.extend_from_slice(&correlation.to_be_bytes());
            frame.extend_from_slice(&(-1i16).to_be_bytes());
            let started = Instant::now();
            socket.write_all(&frame).unwrap();
            let mut size = [0u8; 4];
            socket.read_exact(&mut size).unwrap();
            let mut response = vec![0u8; i32::from_be_bytes(size) as usize];
            socket.read_exact(&mut response).unwrap();
            started.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

/// Creates the topic and fills every partition with records.
fn prepare_topic(runtime: &tokio::runtime::Runtime, bootstrap: &str, topic: &str) {
    runtime.block_on(async {
        support::create_topic(bootstrap, topic, PARTITIONS).await;
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("linger.ms", "5")
            .create()
            .unwrap();
        let sends = (0..PARTITIONS).flat_map(|p| (0..RECORDS_PER_PARTITION).map(move |i| (p, i)));
        let sends = sends.map(|(p, i)| {
            let producer = &producer;
            async move {
                let value = format!("record {i}");
                producer
                    .send(
                        FutureRecord::<(), _>::to(topic).partition(p).payload(&value),
                        Duration::from_secs(30),
                    )
                    .await
                    .unwrap();
            }
        });
        futures::future::join_all(sends).await;
    });
}

/// Resets `groups_count` groups with parallelism 1, 10 and 50 on `bootstrap` and prints the table.
fn run_table(
    runtime: &tokio::runtime::Runtime,
    title: &str,
    bootstrap: &str,
    groups_count: usize,
    run_id: &str,
    snapshots: &Path,
) {
    let topic = format!("bench-reset-{run_id}");
    prepare_topic(runtime, bootstrap, &topic);
    println!("{title}: offset reset to Earliest, {groups_count} groups x {PARTITIONS} partitions");
    println!(
        "{:>11} | {:>9} | {:>13} | {:>10}",
        "parallelism", "wall (s)", "offsets/s", "speed-up"
    );
    let mut baseline = None;
    for parallelism in [1, 10, 50] {
        let groups: Vec<String> = (0..groups_count)
            .map(|g| format!("bench-{run_id}-p{parallelism}-g{g}"))
            .collect();
        commit_all(bootstrap, &topic, &groups);
        let reset: KafkaOffsetReset = serde_json::from_value(json!({
            "apiVersion": "kafka.oso.sh/v1beta1",
            "kind": "KafkaOffsetReset",
            "metadata": {"name": format!("bench-{run_id}-p{parallelism}")},
            "spec": {
                "kafkaCluster": {"bootstrapServers": [bootstrap]},
                "consumerGroups": groups,
                "topics": [{"name": topic}],
                "strategy": "Earliest",
                "parallelism": parallelism,
                "snapshot": {"storage": {"type": "PVC", "pvc": {"claimName": "bench"}}},
            },
        }))
        .unwrap();
        let ctx = Context::new(
            ResourceRef {
                kind: "KafkaOffsetReset".into(),
                name: format!("bench-{run_id}-p{parallelism}"),
                ..Default::default()
            },
            SecretStore::None,
            StorageEnv {
                pvc_root: snapshots.to_owned(),
                config_maps: Default::default(),
            },
        );
        let started = Instant::now();
        let status = runtime.block_on(offset_reset::execute(&reset, &ctx));
        let wall = started.elapsed().as_secs_f64();
        assert_eq!(status.phase, Some(Phase::Completed), "{:?}", status.message);
        assert_eq!(status.groups_reset, Some(groups_count as i32));
        let offsets = (groups_count as f64) * f64::from(PARTITIONS);
        let base = *baseline.get_or_insert(wall);
        println!(
            "{parallelism:>11} | {wall:>9.2} | {:>13.0} | {:>9.1}x",
            offsets / wall,
            base / wall
        );
    }
}

fn main() {
    let Ok(bootstrap) = std::env::var("KBO_TEST_KAFKA_BOOTSTRAP") else {
        eprintln!("KBO_TEST_KAFKA_BOOTSTRAP is not set: start the services with `. .ci/services.sh`");
        return;
    };
    let groups_count: usize = std::env::var("KBO_BENCH_GROUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let rtt_ms: f64 = std::env::var("KBO_BENCH_RTT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = tempfile::tempdir().unwrap();
    println!("2 cores shared with the broker(s)");
    run_table(
        &runtime,
        &format!("loopback, broker {bootstrap}"),
        &bootstrap,
        groups_count,
        &format!("{nanos}-lo"),
        dir.path(),
    );

    let Ok(nisshi) = std::env::var("KBO_TEST_NISSHI_BIN") else {
        eprintln!("KBO_TEST_NISSHI_BIN is not set: no run with a broker behind a delay proxy");
        return;
    };
    // The proxy has a runtime of its own so that it keeps forwarding while the bench blocks.
    let proxy_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = proxy_runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let (broker, broker_port) = start_broker(&nisshi, proxy_port);
    let one_way = Duration::from_secs_f64(rtt_ms / 2000.0);
    proxy_runtime.spawn(delay_proxy(listener, format!("127.0.0.1:{broker_port}"), one_way));
    // tokio's timer ticks in whole milliseconds, so each direction waits up to 1 ms longer than
    // asked: the round trip as measured is what the table ran at.
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let direct = measured_round_trip(&format!("127.0.0.1:{broker_port}"));
    let proxied = measured_round_trip(&format!("127.0.0.1:{proxy_port}"));
    println!();
    println!(
        "round trip asked {rtt_ms} ms; measured (median ApiVersions) {:.2} ms through the proxy, {:.2} ms direct",
        ms(proxied),
        ms(direct)
    );
    run_table(
        &runtime,
        &format!(
            "broker at {:.1} ms RTT as measured, {rtt_ms} ms asked (nisshi on :{broker_port} behind a delay proxy on :{proxy_port})",
            ms(proxied)
        ),
        &format!("127.0.0.1:{proxy_port}"),
        groups_count,
        &format!("{nanos}-rtt"),
        dir.path(),
    );
    drop(broker);
    proxy_runtime.shutdown_background();
}
