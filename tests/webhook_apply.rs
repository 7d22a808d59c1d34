//! `kubectl apply` sequences, client-side and server-side, against the webhooks the way
//! kube-apiserver calls them, so that an apply of the user's file always means what the file says.
//!
//! The API server is emulated with the real webhooks (in-process through the HTTPS router): a
//! write runs `/mutate`, applies its patch, (the schema step adds nothing here: v1alpha1 has no
//! defaults and `/mutate` already wrote v1beta1's), runs `/validate`, and stores the object
//! converted to v1beta1 by `/convert`; a read converts the stored object to the version asked for.
//!
//! - Client-side apply is kubectl's: the object carries the file in the
//!   `kubectl.kubernetes.io/last-applied-configuration` annotation; an apply of an existing
//!   object computes the three-way JSON merge patch from that annotation (deletions), the live
//!   object (additions and changes) and the new file, sends nothing when it is empty
//!   ("unchanged"), and the API server applies it to the live object (an UPDATE).
//! - Server-side apply sends the file itself; the fields the manager `kubectl` owned from its
//!   last apply and no longer gives are removed, the file's are set (lists whole), and the result
//!   is an UPDATE. Fields added by the mutating webhook are owned by the request's manager in one
//!   run of each test and by nobody in the other, so the outcome does not depend on it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failed expectation is the report

mod support;

use std::{collections::BTreeSet, path::Path};

use axum::Router;
use serde_json::{Map, Value, json};
use support::review::{
    FIXTURES, Manifest, Operation, admission_response, admission_review, as_created, contains,
    conversion_review, message, patched, post_review, router, warnings, yaml_files,
};

const ALPHA: &str = "kafka.oso.sh/v1alpha1";
const BETA: &str = "kafka.oso.sh/v1beta1";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Who owns a field the mutating webhook added, for server-side apply.
#[derive(Clone, Copy, Debug)]
enum Added {
    /// The manager of the request that caused it.
    ByTheRequestsManager,
    /// No manager (it stays until someone sets it).
    ByNobody,
}

/// What an apply did.
#[derive(Debug)]
struct Applied {
    /// The client-side patch sent (`None`: nothing was sent, "unchanged"; or a server-side apply).
    patch: Option<Value>,
    /// Every warning of the request, as kubectl prints them.
    warnings: Vec<String>,
}

/// One object in an emulated API server.
struct Cluster {
    router: Router,
    stored: Option<Value>,
    /// Field paths (below `spec`) the manager `kubectl` owns after its server-side applies.
    owned: BTreeSet<Vec<String>>,
    added: Added,
    uid: u32,
}

impl Cluster {
    fn new(added: Added) -> Self {
        Self {
            router: router().0,
            stored: None,
            owned: BTreeSet::new(),
            added,
            uid: 0,
        }
    }

    fn next_uid(&mut self) -> String {
        self.uid += 1;
        format!("0f8c2a4e-1b6d-4e0a-9c3f-{:012}", self.uid)
    }

    /// The object as a client reads it in `api_version`.
    async fn get(&mut self, api_version: &str) -> Option<Value> {
        let stored = self.stored.clone()?;
        if stored["apiVersion"] == api_version {
            return Some(stored);
        }
        Some(self.convert(stored, api_version).await)
    }

    async fn convert(&mut self, object: Value, api_version: &str) -> Value {
        let uid = self.next_uid();
        let review = conversion_review(&uid, api_version, &[object]);
        let answer = post_review(&self.router, "/convert", &review).await;
        assert_eq!(answer["response"]["result"]["status"], "Success", "{answer}");
        answer["response"]["convertedObjects"][0].clone()
    }

    /// A CREATE (no `old`) or UPDATE of `object`, through admission into storage; the object
    /// after mutation and every warning, or the refusal.
    async fn write(&mut self, object: Value, old: Option<&Value>) -> Result<(Value, Vec<String>), String> {
        let operation = if old.is_some() {
            Operation::Update
        } else {
            Operation::Create
        };
        let uid = self.next_uid();
        let review = admission_review(&uid, operation, Some(&object), old, false);
        let answer = post_review(&self.router, "/mutate", &review).await;
        let response = admission_response(&answer, &uid);
        let mut all_warnings = warnings(response);
        if response["allowed"] == false {
            return Err(message(response).to_owned());
        }
        let mutated = patched(&object, response);
        let review = admission_review(&uid, operation, Some(&mutated), old, false);
        let answer = post_review(&self.router, "/validate", &review).await;
        let response = admission_response(&answer, &uid);
        all_warnings.extend(warnings(response));
        if response["allowed"] == false {
            return Err(message(response).to_owned());
        }
        let stored = self.convert(mutated.clone(), BETA).await;
        self.stored = Some(stored);
        Ok((mutated, all_warnings))
    }

    /// `kubectl apply` (client-side) of `file`.
    async fn apply(&mut self, file: &Value) -> Result<Applied, String> {
        let modified = with_last_applied(file);
        let api_version = file["apiVersion"].as_str().unwrap().to_owned();
        let Some(current) = self.get(&api_version).await else {
            let (_, warnings) = self.write(as_created(&modified, "default"), None).await?;
            return Ok(Applied {
                patch: None,
                warnings,
            });
        };
        let original = current
            .pointer(&format!(
                "/metadata/annotations/{}",
                LAST_APPLIED.replace('/', "~1")
            ))
            .and_then(Value::as_str)
            .map(|text| serde_json::from_str(text).unwrap())
            .unwrap_or(Value::Null);
        let patch = three_way_merge_patch(&original, &modified, &current);
        if patch == json!({}) {
            return Ok(Applied {
                patch: None,
                warnings: Vec::new(),
            });
        }
        let mut updated = current.clone();
        json_patch::merge(&mut updated, &patch);
        let (_, warnings) = self.write(updated, Some(&current)).await?;
        Ok(Applied {
            patch: Some(patch),
            warnings,
        })
    }

    /// `kubectl apply --server-side` of `file`.
    async fn apply_server_side(&mut self, file: &Value) -> Result<Applied, String> {
        let api_version = file["apiVersion"].as_str().unwrap().to_owned();
        let given = leaves(&file["spec"]);
        let (sent, result) = match self.get(&api_version).await {
            None => {
                let object = as_created(file, "default");
                (object.clone(), self.write(object, None).await)
            }
            Some(live) => {
                let mut object = live.clone();
                for path in self.owned.difference(&given) {
                    remove(&mut object["spec"], path);
                }
                for path in &given {
                    set(&mut object["spec"], path, lookup(&file["spec"], path).clone());
                }
                (object.clone(), self.write(object, Some(&live)).await)
            }
        };
        let (mutated, warnings) = result?;
        self.owned = given;
        if let Added::ByTheRequestsManager = self.added {
            let before = leaves(&sent["spec"]);
            self.owned
                .extend(leaves(&mutated["spec"]).difference(&before).cloned());
        }
        Ok(Applied {
            patch: None,
            warnings,
        })
    }

    fn stored_spec(&self) -> &Value {
        &self.stored.as_ref().unwrap()["spec"]
    }
}

/// `file` with the last-applied annotation kubectl writes: the file itself (with an empty
/// annotations map, as kubectl serializes it) and a newline.
fn with_last_applied(file: &Value) -> Value {
    let mut without = file.clone();
    without["metadata"]
        .as_object_mut()
        .unwrap()
        .entry("annotations")
        .or_insert_with(|| json!({}));
    let text = format!("{}\n", serde_json::to_string(&without).unwrap());
    let mut modified = without;
    modified["metadata"]["annotations"][LAST_APPLIED] = Value::String(text);
    modified
}

/// kubectl's `CreateThreeWayJSONMergePatch`: the deletions from `original` to `modified` and the
/// additions and changes from `current` to `modified`.
fn three_way_merge_patch(original: &Value, modified: &Value, current: &Value) -> Value {
    let deletions = keep_nulls(&merge_patch(original, modified), true);
    let changes = keep_nulls(&merge_patch(current, modified), false);
    let mut patch = deletions.unwrap_or_else(|| json!({}));
    if let Some(changes) = changes {
        merge_into(&mut patch, &changes);
    }
    patch
}

/// RFC 7386 merge patch turning `from` into `to`.
fn merge_patch(from: &Value, to: &Value) -> Value {
    match (from, to) {
        (Value::Object(a), Value::Object(b)) => {
            let mut out = Map::new();
            for (key, value) in b {
                match a.get(key) {
                    Some(old) if old == value => {}
                    Some(old @ Value::Object(_)) if value.is_object() => {
                        out.insert(key.clone(), merge_patch(old, value));
                    }
                    _ => {
                        out.insert(key.clone(), value.clone());
                    }
                }
            }
            for key in a.keys().filter(|k| !b.contains_key(*k)) {
                out.insert(key.clone(), Value::Null);
            }
            Value::Object(out)
        }
        _ => to.clone(),
    }
}

/// kubectl's `keepOrDeleteNullInObj`: only the nulls (`nulls`), or everything but them; `None`
/// when nothing is left.
fn keep_nulls(patch: &Value, nulls: bool) -> Option<Value> {
    let Value::Object(map) = patch else {
        return (!nulls).then(|| patch.clone());
    };
    let mut out = Map::new();
    for (key, value) in map {
        match value {
            Value::Null if nulls => {
                out.insert(key.clone(), Value::Null);
            }
            Value::Null => {}
            // An explicitly empty map is a value, not an empty patch.
            Value::Object(inner) if inner.is_empty() && !nulls => {
                out.insert(key.clone(), value.clone());
            }
            Value::Object(inner) if inner.is_empty() => {}
            Value::Object(_) => {
                if let Some(inner) = keep_nulls(value, nulls) {
                    out.insert(key.clone(), inner);
                }
            }
            _ if !nulls => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

fn merge_into(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                match target.get_mut(key) {
                    Some(existing @ Value::Object(_)) if value.is_object() => merge_into(existing, value),
                    _ => {
                        target.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

/// The field paths a manager sets with `spec`: objects walked, lists and scalars whole.
fn leaves(spec: &Value) -> BTreeSet<Vec<String>> {
    fn walk(value: &Value, at: &mut Vec<String>, out: &mut BTreeSet<Vec<String>>) {
        match value {
            Value::Object(map) if !map.is_empty() => {
                for (key, child) in map {
                    at.push(key.clone());
                    walk(child, at, out);
                    at.pop();
                }
            }
            Value::Null => {}
            _ if !at.is_empty() => {
                out.insert(at.clone());
            }
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    walk(spec, &mut Vec::new(), &mut out);
    out
}

fn lookup<'a>(value: &'a Value, path: &[String]) -> &'a Value {
    path.iter().fold(value, |v, key| &v[key.as_str()])
}

fn set(value: &mut Value, path: &[String], leaf: Value) {
    let (last, parents) = path.split_last().unwrap();
    let mut node = value;
    for key in parents {
        if !node[key.as_str()].is_object() {
            node[key.as_str()] = json!({});
        }
        node = &mut node[key.as_str()];
    }
    node[last.as_str()] = leaf;
}

/// Removes the field at `path` and the objects it leaves empty.
fn remove(value: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let Value::Object(map) = value else { return };
    if rest.is_empty() {
        map.remove(first);
        return;
    }
    if let Some(child) = map.get_mut(first) {
        remove(child, rest);
        if child.as_object().is_some_and(Map::is_empty) {
            map.remove(first);
        }
    }
}

fn restore(spec: Value) -> Value {
    json!({"apiVersion": ALPHA, "kind": "KafkaRestore", "metadata": {"name": "r"}, "spec": spec})
}

/// The pre-1.0 file: the backup set named by id in a storage location, `spec.storage`.
fn restore_from_storage() -> Value {
    restore(json!({
        "backupId": "nightly-20241201",
        "storage": {"storageType": "s3", "s3": {"bucket": "kafka-backups", "region": "us-west-2"}},
        "kafkaCluster": {"bootstrapServers": ["kafka:9092"]},
        "topics": ["orders"], "topicMapping": {"orders": "orders-restored"},
    }))
}

/// The v1.0.0 file: the backup set of a KafkaBackup, `backupRef.name` (v1beta1
/// `backupRef.kafkaBackupRef`), and no storage.
fn restore_from_kafka_backup() -> Value {
    restore(json!({
        "backupRef": {"name": "nightly"},
        "kafkaCluster": {"bootstrapServers": ["kafka:9092"]},
        "topics": ["orders"], "topicMapping": {"orders": "orders-restored"},
    }))
}

const MODES: [Added; 2] = [Added::ByTheRequestsManager, Added::ByNobody];

fn no_removal_said(applied: &Applied) {
    for warning in &applied.warnings {
        assert!(
            !warning.contains("removed") && !warning.contains("rewr"),
            "a warning says something was removed or rewritten: {warning}"
        );
    }
}

#[tokio::test]
async fn old_spelling_then_new_spelling_means_the_new_file() {
    // Client-side apply.
    let mut cluster = Cluster::new(Added::ByNobody);
    let created = cluster.apply(&restore_from_storage()).await.unwrap();
    assert_eq!(
        cluster.stored_spec()["backupRef"]["storage"]["s3"]["bucket"],
        "kafka-backups"
    );
    let applied = cluster
        .apply(&restore_from_kafka_backup())
        .await
        .unwrap_or_else(|refusal| panic!("client-side apply refused: {refusal}"));
    no_removal_said(&created);
    no_removal_said(&applied);
    let patch = applied.patch.expect("a change is sent");
    assert_eq!(
        patch["spec"]["storage"],
        Value::Null,
        "the file's storage is deleted: {patch}"
    );
    let stored = cluster.stored_spec();
    assert_eq!(
        stored["backupRef"],
        json!({"kafkaBackupRef": {"name": "nightly"}}),
        "{stored:#}"
    );
    // Server-side apply, whoever owns what the webhook added.
    for mode in MODES {
        let mut cluster = Cluster::new(mode);
        cluster.apply_server_side(&restore_from_storage()).await.unwrap();
        let applied = cluster
            .apply_server_side(&restore_from_kafka_backup())
            .await
            .unwrap_or_else(|refusal| panic!("{mode:?}: server-side apply refused: {refusal}"));
        no_removal_said(&applied);
        let stored = cluster.stored_spec();
        assert_eq!(
            stored["backupRef"],
            json!({"kafkaBackupRef": {"name": "nightly"}}),
            "{mode:?}: {stored:#}"
        );
    }
}

#[tokio::test]
async fn new_spelling_then_old_spelling_means_the_old_file() {
    let expected = json!({"backupId": "nightly-20241201",
        "storage": {"type": "S3", "s3": {"bucket": "kafka-backups", "region": "us-west-2"}}});
    let mut cluster = Cluster::new(Added::ByNobody);
    cluster.apply(&restore_from_kafka_backup()).await.unwrap();
    let applied = cluster
        .apply(&restore_from_storage())
        .await
        .unwrap_or_else(|refusal| panic!("client-side apply refused: {refusal}"));
    no_removal_said(&applied);
    assert_eq!(cluster.stored_spec()["backupRef"], expected);
    // The user's spelling is what kubectl reads back.
    let view = cluster.get(ALPHA).await.unwrap();
    assert_eq!(view["spec"]["storage"], restore_from_storage()["spec"]["storage"]);
    assert_eq!(view["spec"].get("backupRef"), None, "{view:#}");
    for mode in MODES {
        let mut cluster = Cluster::new(mode);
        cluster
            .apply_server_side(&restore_from_kafka_backup())
            .await
            .unwrap();
        cluster
            .apply_server_side(&restore_from_storage())
            .await
            .unwrap_or_else(|refusal| panic!("{mode:?}: server-side apply refused: {refusal}"));
        assert_eq!(cluster.stored_spec()["backupRef"], expected, "{mode:?}");
    }
}

/// Every v1alpha1 seed the webhooks admit: applied again unchanged, client-side apply has nothing
/// to send, and server-side apply changes nothing; `kubectl get` shows the file as written.
#[tokio::test]
async fn an_unchanged_reapply_of_every_seed_changes_nothing() {
    let mut checked = 0;
    for path in yaml_files(&Path::new(FIXTURES).join("seeds")) {
        let manifest = Manifest::load(&path);
        let file = manifest.object.clone();
        let mut cluster = Cluster::new(Added::ByNobody);
        if cluster.apply(&file).await.is_err() {
            continue; // a fragment of the documentation, listed in seed-exemptions.yaml
        }
        let view = cluster.get(ALPHA).await.unwrap();
        assert!(
            contains(&view["spec"], &file["spec"]),
            "{}: kubectl get does not show the file as written:\n{:#}",
            manifest.name(),
            view["spec"]
        );
        let again = cluster.apply(&file).await.unwrap();
        assert_eq!(
            again.patch,
            None,
            "{}: an unchanged re-apply sends a patch",
            manifest.name()
        );
        for mode in MODES {
            let mut cluster = Cluster::new(mode);
            cluster.apply_server_side(&file).await.unwrap();
            let stored = cluster.stored.clone();
            let again = cluster.apply_server_side(&file).await.unwrap();
            no_removal_said(&again);
            assert_eq!(cluster.stored, stored, "{}: {mode:?}", manifest.name());
        }
        checked += 1;
    }
    assert!(checked >= 25, "only {checked} seeds applied");
}

/// A field the mutating webhook adds never fights a later file: a scheduled backup turned into a
/// continuous one (which may not also stop at the current offsets) is admitted, in both versions.
#[tokio::test]
async fn a_scheduled_backup_can_become_continuous_by_apply() {
    for (api_version, storage) in [
        (ALPHA, json!({"storageType": "s3", "s3": {"bucket": "b"}})),
        (BETA, json!({"type": "S3", "s3": {"bucket": "b"}})),
    ] {
        let file = |extra: Value| {
            let mut spec = json!({"kafkaCluster": {"bootstrapServers": ["kafka:9092"]}, "topics": ["orders"],
                                  "storage": storage});
            for (key, value) in extra.as_object().unwrap() {
                spec[key] = value.clone();
            }
            json!({"apiVersion": api_version, "kind": "KafkaBackup", "metadata": {"name": "b"}, "spec": spec})
        };
        let mut cluster = Cluster::new(Added::ByNobody);
        cluster
            .apply(&file(json!({"schedule": "0 0 * * * *"})))
            .await
            .unwrap();
        cluster
            .apply(&file(json!({"continuous": true})))
            .await
            .unwrap_or_else(|refusal| panic!("{api_version}: {refusal}"));
        assert_eq!(cluster.stored_spec()["continuous"], true);
        assert_eq!(cluster.stored_spec()["stopAtCurrentOffsets"], false);
        for mode in MODES {
            let mut cluster = Cluster::new(mode);
            cluster
                .apply_server_side(&file(json!({"schedule": "0 0 * * * *"})))
                .await
                .unwrap();
            cluster
                .apply_server_side(&file(json!({"continuous": true})))
                .await
                .unwrap_or_else(|refusal| panic!("{api_version} {mode:?}: {refusal}"));
        }
    }
}

/// A seed with a 5-field cron keeps it in every read, while what runs is the 6-field form.
#[tokio::test]
async fn a_migrated_value_is_read_as_written_and_stored_migrated() {
    let path = Path::new(FIXTURES).join("seeds/kafkabackup/hourly-backup.yaml");
    let file = Manifest::load(&path).object;
    assert_eq!(file["spec"]["schedule"], "0 * * * *");
    let mut cluster = Cluster::new(Added::ByNobody);
    let applied = cluster.apply(&file).await.unwrap();
    assert!(
        applied
            .warnings
            .iter()
            .any(|w| w.starts_with("spec.schedule: \"0 * * * *\" is read as \"0 0 * * * *\"")),
        "{:?}",
        applied.warnings
    );
    assert_eq!(cluster.stored_spec()["schedule"], "0 0 * * * *");
    assert_eq!(cluster.get(ALPHA).await.unwrap()["spec"]["schedule"], "0 * * * *");
}
