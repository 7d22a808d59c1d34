//! `spec.execution` under `run -f` (the binary as a subprocess): retries of a retryable failure,
//! reported on stderr, then the last error; a bootstrap name that does not resolve is retried;
//! `deadlineSeconds` stops an attempt that hangs. Within each attempt the requests are sent again
//! for `retryTimeoutSeconds` (1 s here, so that an attempt fails soon). No service is needed:
//! the brokers are a closed port, a name under `.invalid` and a local socket that accepts
//! connections and never answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::{net::TcpListener, path::Path, process::Command};

use serde_json::Value;

/// Runs `run -f` on a KafkaOffsetReset of group `g` against `bootstrap` with this `execution`
/// block (YAML flow style); returns (exit success, status, stderr).
fn run_reset(dir: &Path, bootstrap: &str, execution: &str) -> (bool, Value, String) {
    let manifest = dir.join("reset.yaml");
    std::fs::write(
        &manifest,
        format!(
            "apiVersion: kafka.oso.sh/v1beta1\nkind: KafkaOffsetReset\nmetadata:\n  name: retried\nspec:\n  kafkaCluster:\n    bootstrapServers: [\"{bootstrap}\"]\n  consumerGroups: [g]\n  strategy: Earliest\n  snapshot:\n    enabled: false\n  execution: {execution}\n"
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kafka-backup-operator"))
        .args(["run", "-f"])
        .arg(&manifest)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    let status: Value = serde_saphyr::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not a status ({e}): {stdout}\nstderr: {stderr}"));
    (output.status.success(), status["status"].clone(), stderr)
}

/// The lines `run -f` printed about retries.
fn retry_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("attempt ")).collect()
}

#[test]
fn run_f_retries_a_refused_connection_as_often_as_execution_retries_then_fails_with_the_last_error() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on: connections are refused.
    let refused = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let (ok, status, stderr) = run_reset(dir.path(), &refused, "{retries: 2, retryTimeoutSeconds: 1}");
    assert!(!ok, "{stderr}");
    let lines = retry_lines(&stderr);
    assert_eq!(lines.len(), 2, "one line per retry: {stderr}");
    for (line, n) in lines.iter().zip(1..) {
        assert!(
            line.starts_with(&format!(
                "attempt {n} of 3 failed: connecting to Kafka broker {refused}"
            )),
            "{line}"
        );
        assert!(line.contains("the next attempt starts in"), "{line}");
    }
    assert_eq!(status["phase"], "Failed");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!("connecting to Kafka broker {refused}")),
        "{message}"
    );
    assert!(message.ends_with("(attempt 3 of 3)"), "{message}");
}

#[test]
fn run_f_retries_a_bootstrap_name_that_does_not_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, status, stderr) = run_reset(
        dir.path(),
        "no-such-host.invalid:9092",
        "{retries: 1, retryTimeoutSeconds: 1}",
    );
    assert!(!ok, "{stderr}");
    let lines = retry_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with(
            "attempt 1 of 2 failed: connecting to Kafka broker no-such-host.invalid:9092: cannot resolve"
        ),
        "{}",
        lines[0]
    );
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with("connecting to Kafka broker no-such-host.invalid:9092: cannot resolve"),
        "{message}"
    );
    assert!(message.ends_with("(attempt 2 of 2)"), "{message}");
}

#[test]
fn run_f_stops_an_attempt_at_execution_deadline_seconds() {
    let dir = tempfile::tempdir().unwrap();
    // A "broker" that accepts connections and never answers: connecting hangs in the handshake.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = silent.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming() {
            held.push(stream);
        }
    });
    let (ok, status, stderr) = run_reset(dir.path(), &address, "{deadlineSeconds: 1}");
    assert!(!ok, "{stderr}");
    assert_eq!(status["phase"], "Failed");
    let message = status["message"].as_str().unwrap();
    assert!(
        message.starts_with("execution.deadlineSeconds: the attempt did not finish within 1 s"),
        "{message}"
    );
    assert!(retry_lines(&stderr).is_empty(), "{stderr}");
}
