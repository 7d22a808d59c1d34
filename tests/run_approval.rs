//! `run -f --plan-only` and `run -f --approve HASH` of a KafkaOffsetReset through the binary,
//! against the nisshi broker: the plan is printed with its hash and nothing is committed; an
//! approval runs only the very plan it names, computed afresh, and a commit made in between
//! makes it refuse with the new plan. The committed offsets are read with a client of the test's
//! own.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::Path;

use rdkafka::{
    ClientConfig, Offset, TopicPartitionList,
    consumer::{CommitMode, Consumer},
};
use serde_json::{Value, json};
use support::{committed, seed_group, service, unique};

/// `run -f manifest` with `flags`, state in `dir`: (success, status, stderr).
fn run(manifest: &Path, dir: &Path, flags: &[&str]) -> (bool, Value, String) {
    let (ok, document, stderr) = support::run_f(manifest, |c| {
        c.args(flags)
            .arg("--state-dir")
            .arg(dir.join("state"))
            .env_remove("KBO_CATALOG_DIR")
            .env_remove("KBO_CONFIGMAPS_DIR")
    });
    (ok, document["status"].clone(), stderr)
}

fn planned(status: &Value) -> (i64, i64) {
    let p = &status["plan"]["groups"][0]["partitions"][0];
    (
        p["previousOffset"].as_i64().unwrap(),
        p["newOffset"].as_i64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_only_then_approve_runs_only_the_plan_it_names() {
    let Some(bootstrap) = service("KBO_TEST_KAFKA_BOOTSTRAP") else {
        return;
    };
    let (topic, group) = (unique("approve-t"), unique("approve-g"));
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &bootstrap);
    let (consumer, _) = seed_group(client, &topic, &group, 4).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("reset.yaml");
    let reset = json!({
        "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaOffsetReset",
        "metadata": {"name": "rewind", "namespace": "team-a"},
        "spec": {"kafkaCluster": {"bootstrapServers": [bootstrap]}, "consumerGroups": [group],
            "topics": [{"name": topic}], "strategy": "Earliest"},
    });
    std::fs::write(&manifest, serde_json::to_string(&reset).unwrap()).unwrap();

    // The plan, its hash, nothing committed.
    let (ok, status, stderr) = run(&manifest, dir.path(), &["--plan-only"]);
    assert!(ok, "{stderr}");
    assert_eq!(status["phase"], "PendingApproval", "{status}");
    assert_eq!(planned(&status), (4, 0));
    let first = status["planHash"].as_str().unwrap().to_owned();
    assert!(stderr.contains(&format!("--approve {first}")), "{stderr}");
    assert_eq!(committed(&consumer, &topic, 1), [(0, 4)].into());

    // A hash of no plan is refused.
    let (ok, status, stderr) = run(&manifest, dir.path(), &["--approve", "0123abcd"]);
    assert!(!ok, "{stderr}");
    assert_eq!(status["phase"], "PendingApproval", "{status}");
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("=0123abcd does not name the plan")
    );
    assert_eq!(status["planHash"], first.as_str(), "nothing moved: the same plan");
    assert_eq!(committed(&consumer, &topic, 1), [(0, 4)].into());

    // A commit between plan and approval: the approval is refused with the new plan and hash.
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(3)).unwrap();
    consumer.commit(&tpl, CommitMode::Sync).unwrap();
    let (ok, status, stderr) = run(&manifest, dir.path(), &["--approve", &first]);
    assert!(!ok, "{stderr}");
    assert_eq!(status["phase"], "PendingApproval", "{status}");
    assert_eq!(planned(&status), (3, 0));
    let second = status["planHash"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert!(stderr.contains(&format!("--approve {second}")), "{stderr}");
    assert_eq!(committed(&consumer, &topic, 1), [(0, 3)].into());

    // The new hash approved: the planned offsets are committed.
    let (ok, status, stderr) = run(&manifest, dir.path(), &["--approve", &second]);
    assert!(ok, "{stderr}");
    assert_eq!(status["phase"], "Completed", "{status}");
    assert_eq!(status["planHash"], second.as_str());
    let approved = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Approved")
        .unwrap();
    assert_eq!(approved["status"], "True", "{approved}");
    assert_eq!(committed(&consumer, &topic, 1), [(0, 0)].into());
}

#[test]
fn approval_flags_need_one_committing_reset() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("dry.yaml");
    let reset = json!({
        "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaOffsetReset",
        "metadata": {"name": "dry"},
        "spec": {"kafkaCluster": {"bootstrapServers": ["localhost:1"]}, "consumerGroups": ["g"],
            "strategy": "Earliest", "dryRun": true},
    });
    std::fs::write(&manifest, serde_json::to_string(&reset).unwrap()).unwrap();
    let (ok, _, stderr) = run(&manifest, dir.path(), &["--plan-only"]);
    assert!(!ok);
    assert!(
        stderr.contains("--plan-only plans and approves one KafkaOffsetReset:")
            && stderr.contains("spec.dryRun is true"),
        "{stderr}"
    );
    let two = format!(
        "{}\n---\n{}",
        serde_json::to_string(&reset).unwrap(),
        serde_json::to_string(&reset).unwrap()
    );
    std::fs::write(&manifest, two).unwrap();
    let (ok, _, stderr) = run(&manifest, dir.path(), &["--approve", "abc"]);
    assert!(!ok);
    assert!(stderr.contains("the manifests hold 2 resources"), "{stderr}");
}

/// A consumer joins the group between plan and approval: the group is no longer Empty, so the
/// fresh plan differs (it says why the group cannot be reset) and the approval is refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_group_that_gets_members_after_the_plan_refuses_the_approval() {
    let Some(bootstrap) = service("KBO_TEST_KAFKA_BOOTSTRAP") else {
        return;
    };
    let (topic, group) = (unique("approve-active-t"), unique("approve-active-g"));
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", &bootstrap);
    let (reader, _) = seed_group(client.clone(), &topic, &group, 4).await;
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("reset.yaml");
    let reset = json!({
        "apiVersion": "kafka.oso.sh/v1beta1", "kind": "KafkaOffsetReset",
        "metadata": {"name": "rewind"},
        "spec": {"kafkaCluster": {"bootstrapServers": [bootstrap]}, "consumerGroups": [group],
            "topics": [{"name": topic}], "strategy": "Latest"},
    });
    std::fs::write(&manifest, serde_json::to_string(&reset).unwrap()).unwrap();
    let (ok, status, stderr) = run(&manifest, dir.path(), &["--plan-only"]);
    assert!(ok, "{stderr}");
    assert_eq!(planned(&status), (4, 5));
    let hash = status["planHash"].as_str().unwrap().to_owned();

    let member: rdkafka::consumer::BaseConsumer = client
        .clone()
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    member.subscribe(&[&topic]).unwrap();
    for _ in 0..100 {
        let _ = member.poll(std::time::Duration::from_millis(200));
        if member.assignment().is_ok_and(|a| a.count() > 0) {
            break;
        }
    }
    assert!(member.assignment().unwrap().count() > 0, "the member joined");

    let (ok, status, stderr) = run(&manifest, dir.path(), &["--approve", &hash]);
    assert!(!ok, "{stderr}");
    assert_eq!(status["phase"], "PendingApproval", "{status}");
    assert_ne!(status["planHash"], hash.as_str());
    let error = status["plan"]["groups"][0]["error"].as_str().unwrap();
    assert!(error.contains("active member(s)"), "{error}");
    assert_eq!(committed(&reader, &topic, 1), [(0, 4)].into());
}
