//! Integrity check throughput and memory: the backup set of the backup benchmark (1 KiB JSON-like
//! values, zstd-3 ratio about 3.8, 16-byte keys, 8 partitions, 8 MiB segments), written by the
//! backup engine to local disk with compression None and Zstd, then validated (integrity only:
//! every segment read, CRC-checked, decompressed, every record walked and compared with the
//! manifest).
//!
//! `KBO_BENCH_RECORDS` records (default 1,000,000 = 1 GiB of values). Needs
//! `KBO_TEST_KAFKA_BOOTSTRAP` to make the set. Run: `cargo bench --bench validation`.
//!
//! The check runs in a fresh child process (this binary, re-executed), so its memory is its own.
//! MB/s = uncompressed record bytes (the set's `bytes`) / wall time; stored MB/s = bytes read
//! from storage / wall time; CPU s = user + system time of the child during the check; peak RSS
//! = the child's VmHWM, reset just before the check (/proc/self/clear_refs), with its RSS before
//! the check in parentheses. The segments were just written, so they are read from the page
//! cache: this measures the CPU side of the check.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{path::Path, time::Instant};

use kafka_backup_operator::{
    api::v1beta1::{CheckOutcome, KafkaBackup, KafkaBackupValidation, RunPhase},
    ops::{Context, backup, validation},
    secrets::SecretStore,
};
use serde_json::json;

mod support;

use support::{PARTITIONS, cpu_seconds, produce, reset_peak_rss, status_kib};

fn ctx(root: &Path, name: &str) -> Context {
    support::ctx(root, name, SecretStore::None)
}

/// The measured step, in a child process: validates set `id` under `root` (integrity only) and
/// prints time, CPU, RSS and the check's message as JSON.
fn child(root: &Path, id: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let check: KafkaBackupValidation = serde_json::from_value(json!({"apiVersion": "kafka.oso.sh/v1beta1",
        "kind": "KafkaBackupValidation", "metadata": {"name": format!("v-{id}")},
        "spec": {"backupRef": {"backupId": id, "storage": {"type": "PVC", "pvc": {"claimName": "bench"}}}}}))
    .unwrap();
    let context = ctx(root, &format!("v-{id}"));
    let before = status_kib("VmRSS:") / 1024.0;
    reset_peak_rss();
    let cpu = cpu_seconds();
    let started = Instant::now();
    let status = runtime.block_on(validation::execute(&check, &context));
    let secs = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    let peak = status_kib("VmHWM:") / 1024.0;
    assert_eq!(status.result, Some(CheckOutcome::Passed), "{status:#?}");
    let message = status.checks.as_ref().unwrap()[0]
        .message
        .clone()
        .unwrap_or_default();
    println!(
        "{}",
        json!({"secs": secs, "cpu": cpu, "peak": peak, "before": before, "message": message})
    );
}

fn main() {
    if let (Ok(root), Ok(id)) = (
        std::env::var("KBO_BENCH_CHILD_ROOT"),
        std::env::var("KBO_BENCH_CHILD_ID"),
    ) {
        return child(Path::new(&root), &id);
    }
    let Ok(bootstrap) = std::env::var("KBO_TEST_KAFKA_BOOTSTRAP") else {
        eprintln!("KBO_TEST_KAFKA_BOOTSTRAP is not set: nothing to measure");
        return;
    };
    let records: u64 = std::env::var("KBO_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let run_id = std::process::id();
    let topic = format!("bench-kbv-{run_id}");
    runtime.block_on(support::create_topic(&bootstrap, &topic, PARTITIONS));
    let root = tempfile::tempdir().unwrap();
    let started = Instant::now();
    produce(&bootstrap, &topic, records, false);
    eprintln!(
        "produced {records} records in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let pvc = json!({"type": "PVC", "pvc": {"claimName": "bench"}});
    let mut rows = Vec::new();
    for compression in ["None", "Zstd"] {
        let id = format!("kbv-{}-{run_id}", compression.to_lowercase());
        let spec: KafkaBackup = serde_json::from_value(json!({"apiVersion": "kafka.oso.sh/v1beta1",
            "kind": "KafkaBackup", "metadata": {"name": id},
            "spec": {"kafkaCluster": {"bootstrapServers": [bootstrap]}, "topics": [topic],
                "storage": pvc, "backupId": id, "compression": compression,
                "includeOffsetHeaders": false, "segmentMaxBytes": 8_388_608,
                "memoryBudgetBytes": 134_217_728, "rateLimiting": {"maxConcurrentPartitions": PARTITIONS}}}))
        .unwrap();
        let started = Instant::now();
        let status = runtime.block_on(backup::execute(&spec, &ctx(root.path(), &id)));
        assert_eq!(status.phase, Some(RunPhase::Completed), "{status:?}");
        eprintln!("backup {compression}: {:.1}s", started.elapsed().as_secs_f64());

        // Measured in a fresh process, so the peak RSS is the check's own.
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .env("KBO_BENCH_CHILD_ROOT", root.path())
            .env("KBO_BENCH_CHILD_ID", &id)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let (secs, cpu, peak, rss_before) = (
            m["secs"].as_f64().unwrap(),
            m["cpu"].as_f64().unwrap(),
            m["peak"].as_f64().unwrap(),
            m["before"].as_f64().unwrap(),
        );
        let message = m["message"].as_str().unwrap().to_owned();
        // "<n> segments verified (<records> records, <bytes> bytes uncompressed, ..."
        let number = |after: &str| -> u64 {
            let at = message.find(after).unwrap();
            message[..at]
                .rsplit(|c: char| !c.is_ascii_digit())
                .find(|s| !s.is_empty())
                .unwrap()
                .parse()
                .unwrap()
        };
        let (segments, verified, bytes) = (
            number(" segments verified"),
            number(" records,"),
            number(" bytes uncompressed"),
        );
        assert_eq!(verified, records);
        let stored: u64 = support::dir_size(&root.path().join(format!("bench/backups/{id}/topics")));
        rows.push((compression, segments, bytes, stored, secs, cpu, peak, rss_before));
    }
    runtime.block_on(support::delete_topic(&bootstrap, &topic));
    println!();
    println!(
        "| set | segments | uncompressed MB | stored MB | time s | MB/s (uncompressed) | MB/s (stored) | CPU s | peak RSS MiB (before) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (compression, segments, bytes, stored, secs, cpu, peak, before) in rows {
        println!(
            "| {compression} | {segments} | {:.0} | {:.0} | {secs:.2} | {:.0} | {:.0} | {cpu:.2} | {peak:.0} ({before:.0}) |",
            bytes as f64 / 1e6,
            stored as f64 / 1e6,
            bytes as f64 / secs / 1e6,
            stored as f64 / secs / 1e6,
        );
    }
}
