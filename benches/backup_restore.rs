//! Backup and restore throughput against the real broker, side by side with plain rdkafka
//! clients on the same data.
//!
//! Data: `KBO_BENCH_RECORDS` records (default 1,000,000) of 1 KiB JSON-like values (zstd-3 ratio
//! about 3.8) with 16-byte keys over 8 partitions. Needs `KBO_TEST_KAFKA_BOOTSTRAP` (and
//! `KBO_TEST_S3_ENDPOINT` for the S3 rows). Run: `cargo bench --bench backup_restore`.
//! `KBO_BENCH_ONLY=<text>|<text>...` keeps only the backup/restore steps whose name contains one
//! of the texts (e.g. `None -> local|(none set)`; the reference rows always run);
//! `KBO_BENCH_READ_COMMITTED=1` adds a reference consumer row with `isolation.level=read_committed`
//! (what the backup uses).
//!
//! Local segments leave the page cache once written (`ObjectLocation::drop_cached`), so the
//! restore rows read them from disk, as a restore days after the backup would. Each restore's
//! target topic is deleted after its row, so every restore meets the broker as the reference
//! producer did: holding the source topic only.
//!
//! MB/s = payload bytes (keys + values) / wall time of the step; CPU s = user + system time of
//! the process during the step (/proc/self/stat); peak RSS = VmHWM of the process, reset before
//! each step (/proc/self/clear_refs). Each backup and restore step runs in a child process of the
//! bench (`KBO_BENCH_STEP`), so its CPU time and peak RSS are its own and not the heap the steps
//! before it left behind.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use kafka_backup_operator::{
    api::v1beta1::{KafkaBackup, KafkaRestore, Phase, RunPhase},
    ops::{Context, backup, restore},
    secrets::SecretStore,
};
use rdkafka::{
    ClientConfig, Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
};
use serde_json::{Value, json};

mod support;

use support::{PARTITIONS, VALUE_LEN, cpu_seconds, produce, reset_peak_rss, status_kib, value};

struct Row {
    name: String,
    mb_s: f64,
    cpu: f64,
    rss_mib: f64,
    note: String,
}

fn peak_rss_mib() -> f64 {
    status_kib("VmHWM:") / 1024.0
}

fn measure(name: &str, payload: u64, note: &str, step: impl FnOnce() -> String) -> Row {
    reset_peak_rss();
    let cpu = cpu_seconds();
    let started = Instant::now();
    let extra = step();
    let secs = started.elapsed().as_secs_f64();
    let row = Row {
        name: name.into(),
        mb_s: payload as f64 / secs / 1e6,
        cpu: cpu_seconds() - cpu,
        rss_mib: peak_rss_mib(),
        note: format!("{note}{extra}"),
    };
    eprintln!(
        "{:<44} {:>8.1} MB/s {:>7.2} CPU s {:>7.0} MiB  {}",
        row.name, row.mb_s, row.cpu, row.rss_mib, row.note
    );
    row
}

/// Runs step `name` in a child process of this bench and reads back its row.
fn isolated(name: &str, run_id: u32, root: &Path) -> Row {
    let out = Command::new(std::env::current_exe().unwrap())
        .arg("--bench")
        .env("KBO_BENCH_STEP", name)
        .env("KBO_BENCH_RUN_ID", run_id.to_string())
        .env("KBO_BENCH_ROOT", root)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success(), "step {name:?} failed: {}", out.status);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ROW\t"))
        .unwrap_or_else(|| panic!("step {name:?} printed no row"));
    let f: Vec<&str> = line.split('\t').collect();
    Row {
        name: f[0].into(),
        mb_s: f[1].parse().unwrap(),
        cpu: f[2].parse().unwrap(),
        rss_mib: f[3].parse().unwrap(),
        note: f[4].into(),
    }
}

/// What a step does in this process: run it here (the child), hand it to a child, or skip it.
fn here(name: &str, step: Option<&str>, wanted: bool, run_id: u32, root: &Path, rows: &mut Vec<Row>) -> bool {
    match step {
        Some(step) => step == name,
        None => {
            if wanted {
                rows.push(isolated(name, run_id, root));
            }
            false
        }
    }
}

/// The plain rdkafka rows the steps are compared with (and the data set, produced by the first).
fn reference_rows(
    bootstrap: &str,
    topic: &str,
    records: u64,
    payload: u64,
    run_id: u32,
    runtime: &tokio::runtime::Runtime,
    rows: &mut Vec<Row>,
) {
    rows.push(measure(
        "reference producer (rdkafka, acks=all)",
        payload,
        "",
        || {
            produce(bootstrap, topic, records, false);
            String::new()
        },
    ));
    // The restore's producer is idempotent (no duplicate on a retry): the same guarantee from a
    // plain producer, on a scratch topic, is the like-for-like reference.
    let idempotent_topic = format!("bench-idempotent-{run_id}");
    runtime.block_on(support::create_topic(bootstrap, &idempotent_topic, PARTITIONS));
    rows.push(measure(
        "reference producer (acks=all, idempotent)",
        payload,
        "",
        || {
            produce(bootstrap, &idempotent_topic, records, true);
            String::new()
        },
    ));
    runtime.block_on(support::delete_topic(bootstrap, &idempotent_topic));
    rows.push(measure(
        "reference consumer (rdkafka, drain)",
        payload,
        "",
        || {
            let n = consume_reference(bootstrap, topic, "read_uncommitted");
            assert_eq!(n, records);
            String::new()
        },
    ));
    if std::env::var("KBO_BENCH_READ_COMMITTED").is_ok_and(|v| v == "1") {
        rows.push(measure(
            "reference consumer (read_committed)",
            payload,
            "",
            || {
                let n = consume_reference(bootstrap, topic, "read_committed");
                assert_eq!(n, records);
                String::new()
            },
        ));
    }
}

/// `run -f MANIFEST --workers N` of the operator binary.
struct WorkersRun<'a> {
    manifest: &'a Path,
    workers: usize,
    root: &'a Path,
    secrets: &'a Path,
}

impl WorkersRun<'_> {
    /// Its row, with its CPU s per GB (of the run -f process and its workers); `check` judges
    /// the status it printed.
    fn row(&self, name: &str, payload: u64, note: &str, check: impl FnOnce(&Value)) -> Row {
        let note = format!("{note}run -f --workers (RSS: the bench step, not the workers)");
        let mut row = measure(name, payload, &note, || {
            let out = Command::new(env!("CARGO_BIN_EXE_kafka-backup-operator"))
                .args(["run", "-f"])
                .arg(self.manifest)
                .arg("--workers")
                .arg(self.workers.to_string())
                .arg("--pvc-root")
                .arg(self.root)
                .arg("--secrets-dir")
                .arg(self.secrets)
                .stderr(Stdio::null())
                .output()
                .unwrap();
            let printed = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{printed}");
            let document: Value = serde_saphyr::from_str(&printed).unwrap();
            check(&document["status"]);
            String::new()
        });
        row.note = format!("{}, {:.1} CPU s/GB", row.note, row.cpu / (payload as f64 / 1e9));
        row
    }
}

fn consume_reference(bootstrap: &str, topic: &str, isolation: &str) -> u64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("isolation.level", isolation)
        .set("group.id", "bench-reference")
        .set("enable.partition.eof", "true")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut eof = 0;
    let mut n = 0u64;
    while eof < PARTITIONS {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(m)) => {
                n += 1;
                std::hint::black_box((m.key(), m.payload()));
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => eof += 1,
            Some(Err(e)) => panic!("{e}"),
            None => {}
        }
    }
    n
}

fn ctx(root: &Path, name: &str) -> Context {
    let mut s3 = BTreeMap::new();
    s3.insert("AWS_ACCESS_KEY_ID".to_owned(), b"test".to_vec());
    s3.insert("AWS_SECRET_ACCESS_KEY".to_owned(), b"test".to_vec());
    let secrets = SecretStore::Map {
        origin: "bench".into(),
        secrets: HashMap::from([("s3".to_owned(), s3)]),
    };
    support::ctx(root, name, secrets)
}

fn main() {
    let Ok(bootstrap) = std::env::var("KBO_TEST_KAFKA_BOOTSTRAP") else {
        eprintln!("KBO_TEST_KAFKA_BOOTSTRAP is not set: nothing to measure");
        return;
    };
    let records: u64 = std::env::var("KBO_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let only = std::env::var("KBO_BENCH_ONLY").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.split('|').any(|o| name.contains(o));
    let s3_endpoint = std::env::var("KBO_TEST_S3_ENDPOINT").ok();
    let bucket = std::env::var("KBO_TEST_S3_BUCKET").unwrap_or_else(|_| "test-bucket".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // A child runs one step on the parent's topic and directory.
    let step = std::env::var("KBO_BENCH_STEP").ok();
    let step = step.as_deref();
    let run_id: u32 = std::env::var("KBO_BENCH_RUN_ID")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(std::process::id);
    let topic = format!("bench-src-{run_id}");
    // The temporary directory lives (and is removed) with the parent.
    let (_temporary, root): (Option<tempfile::TempDir>, PathBuf) = match std::env::var_os("KBO_BENCH_ROOT") {
        Some(root) => (None, root.into()),
        None => {
            let t = tempfile::tempdir().unwrap();
            let root = t.path().to_owned();
            (Some(t), root)
        }
    };
    let mut rows = Vec::new();
    let payload = {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut buf = Vec::new();
        value(0, &mut rng, &mut buf);
        (records * (16 + VALUE_LEN as u64)) as f64
    } as u64;
    if step.is_none() {
        runtime.block_on(support::create_topic(&bootstrap, &topic, PARTITIONS));
        eprintln!(
            "{records} records x ({VALUE_LEN} B value + 16 B key) = {:.2} GB over {PARTITIONS} partitions",
            payload as f64 / 1e9
        );
        reference_rows(&bootstrap, &topic, records, payload, run_id, &runtime, &mut rows);
    }
    let backup_document = |storage: Value, compression: &str, id: &str| -> Value {
        json!({"apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaBackup",
        "metadata": {"name": id},
        "spec": {"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [topic],
            "storage": storage, "backupId": id, "compression": compression,
            "includeOffsetHeaders": false, "segmentMaxBytes": 8_388_608,
            "memoryBudgetBytes": 134_217_728, "rateLimiting": {"maxConcurrentPartitions": PARTITIONS}}})
    };
    let backup_spec = |storage: Value, compression: &str, id: &str| -> KafkaBackup {
        serde_json::from_value(backup_document(storage, compression, id)).unwrap()
    };
    let pvc = json!({"type": "PVC", "pvc": {"claimName": "bench"}});
    let mut storages = vec![("local", pvc.clone())];
    if let Some(endpoint) = &s3_endpoint {
        storages.push((
            "SeaweedFS",
            json!({"type": "S3", "s3": {"bucket": bucket, "endpoint": endpoint, "region": "us-east-1",
                "pathStyle": true, "allowHttp": true, "prefix": format!("bench-{run_id}"),
                "credentialsSecret": {"name": "s3"}}}),
        ));
    }
    for (where_, storage) in &storages {
        for compression in ["None", "Zstd"] {
            let id = format!(
                "bench-{}-{}-{run_id}",
                where_.to_lowercase(),
                compression.to_lowercase()
            );
            let name = format!("backup {compression} -> {where_}");
            if !here(&name, step, wanted(&name), run_id, &root, &mut rows) {
                continue;
            }
            let spec = backup_spec(storage.clone(), compression, &id);
            let context = ctx(&root, &id);
            rows.push(measure(&name, payload, "", || {
                let status = runtime.block_on(backup::execute(&spec, &context));
                assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
                assert_eq!(
                    status.progress.as_ref().and_then(|p| p.records),
                    Some(records as i64)
                );
                String::new()
            }));
        }
    }
    // The same backup split over worker processes: `run -f --workers N` of the operator binary,
    // N `worker` processes each copying its share of the partitions. CPU s counts the run -f
    // process and its workers. On two shared cores the wall time cannot scale with N; the CPU
    // per GB should stay flat (each worker's own rate, times N, until the broker or the storage
    // is the limit).
    for (where_, storage) in &storages {
        for workers in [1, 2, 4] {
            let name = format!("backup Zstd -> {where_}, {workers} worker processes");
            if !here(&name, step, wanted(&name), run_id, &root, &mut rows) {
                continue;
            }
            let id = format!("bench-{}-workers{workers}-{run_id}", where_.to_lowercase());
            let manifest = root.join(format!("{id}.json"));
            let document = backup_document(storage.clone(), "Zstd", &id);
            std::fs::write(&manifest, serde_json::to_vec(&document).unwrap()).unwrap();
            let secrets = root.join("secrets");
            std::fs::create_dir_all(secrets.join("s3")).unwrap();
            std::fs::write(secrets.join("s3/AWS_ACCESS_KEY_ID"), "test").unwrap();
            std::fs::write(secrets.join("s3/AWS_SECRET_ACCESS_KEY"), "test").unwrap();
            let run = WorkersRun {
                manifest: &manifest,
                workers,
                root: &root,
                secrets: &secrets,
            };
            rows.push(run.row(&name, payload, "", |status| {
                assert_eq!(status["progress"]["records"], records as i64, "{status}");
            }));
        }
    }
    // Restores of the 1-worker set split the same way (by target partition), into fresh topics.
    for (where_, storage) in &storages {
        for workers in [1, 2, 4] {
            let name = format!("restore from {where_} (zstd set), {workers} worker processes");
            let target = format!("bench-dst-{}-workers{workers}-{run_id}", where_.to_lowercase());
            if !here(&name, step, wanted(&name), run_id, &root, &mut rows) {
                if step.is_none() {
                    runtime.block_on(support::delete_topic(&bootstrap, &target));
                }
                continue;
            }
            let id = format!("bench-{}-workers1-{run_id}", where_.to_lowercase());
            let restore_name = format!("r-{}-workers{workers}", where_.to_lowercase());
            let manifest = root.join(format!("{restore_name}.json"));
            let document = json!({"apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaRestore",
                "metadata": {"name": restore_name},
                "spec": {"backupRef": {"backupId": id, "storage": storage},
                    "kafkaCluster": {"bootstrapServers": [bootstrap]},
                    "topicMapping": {topic.clone(): target}, "createTopics": {"enabled": true},
                    "rateLimiting": {"maxConcurrentPartitions": PARTITIONS}}});
            std::fs::write(&manifest, serde_json::to_vec(&document).unwrap()).unwrap();
            let secrets = root.join("secrets");
            let run = WorkersRun {
                manifest: &manifest,
                workers,
                root: &root,
                secrets: &secrets,
            };
            rows.push(run.row(&name, payload, "acks=all, idempotent, ", |status| {
                assert_eq!(status["recordsRestored"], records as i64, "{status}");
            }));
        }
    }
    if step.is_none() {
        let zstd_size = support::dir_size(&root.join(format!("bench/backups/bench-local-zstd-{run_id}")));
        let none_size = support::dir_size(&root.join(format!("bench/backups/bench-local-none-{run_id}")));
        if zstd_size > 0 {
            eprintln!(
                "stored: none {:.0} MB, zstd {:.0} MB (ratio {:.2})",
                none_size as f64 / 1e6,
                zstd_size as f64 / 1e6,
                none_size as f64 / zstd_size.max(1) as f64
            );
        }
    }

    for compression in ["none", "zstd"] {
        let name = format!("restore from local ({compression} set)");
        let target = format!("bench-dst-{compression}-{run_id}");
        if !here(&name, step, wanted(&name), run_id, &root, &mut rows) {
            // Each restore meets the broker holding only the source topic: nisshi keeps topics in
            // memory, and one growing by another GiB is slower (a second restore in a run, its
            // target kept, ran at 270-370 MB/s against 490-520 alone).
            if step.is_none() {
                runtime.block_on(support::delete_topic(&bootstrap, &target));
            }
            continue;
        }
        let id = format!("bench-local-{compression}-{run_id}");
        let spec: KafkaRestore = serde_json::from_value(json!({"apiVersion": "kafka.oso.sh/v1beta1",
            "kind": "KafkaRestore", "metadata": {"name": format!("r-{compression}")},
            "spec": {"backupRef": {"backupId": id, "storage": pvc},
                "kafkaCluster": {"bootstrapServers": [bootstrap]},
                "topicMapping": {topic.clone(): target}, "createTopics": {"enabled": true},
                "rateLimiting": {"maxConcurrentPartitions": PARTITIONS}}}))
        .unwrap();
        let context = ctx(&root, &format!("r-{compression}"));
        // A step re-run on a kept KBO_BENCH_ROOT restores anew into a fresh topic.
        runtime.block_on(support::delete_topic(&bootstrap, &target));
        let _ = std::fs::remove_dir_all(root.join(format!("bench/backups/{id}/restores")));
        rows.push(measure(&name, payload, "acks=all, idempotent", || {
            let status = runtime.block_on(restore::execute(&spec, &context));
            assert_eq!(status.phase, Some(Phase::Completed), "{status:?}");
            assert_eq!(status.records_restored, Some(records as i64));
            String::new()
        }));
    }

    if step.is_some() {
        for row in &rows {
            println!(
                "ROW\t{}\t{}\t{}\t{}\t{}",
                row.name, row.mb_s, row.cpu, row.rss_mib, row.note
            );
        }
        return;
    }
    // The broker keeps topics in memory: leave nothing behind.
    runtime.block_on(support::delete_topic(&bootstrap, &topic));

    let reference_consumer = rows[2].mb_s;
    let reference_producer = rows[0].mb_s;
    let reference_idempotent = rows[1].mb_s;
    println!();
    println!("| step | MB/s | CPU s | peak RSS MiB | vs reference |\n|---|---|---|---|---|");
    for row in &rows {
        let vs = if row.name.starts_with("backup") {
            format!("{:.0}% of consumer", 100.0 * row.mb_s / reference_consumer)
        } else if row.name.starts_with("restore") {
            format!(
                "{:.0}% of producer, {:.0}% of idempotent producer",
                100.0 * row.mb_s / reference_producer,
                100.0 * row.mb_s / reference_idempotent
            )
        } else {
            String::new()
        };
        println!(
            "| {} | {:.1} | {:.2} | {:.0} | {} {} |",
            row.name, row.mb_s, row.cpu, row.rss_mib, vs, row.note
        );
    }
}
