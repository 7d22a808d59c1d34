//! Kubernetes Events (`events.k8s.io/v1`) about the reconciled objects.
//!
//! An Event that repeats (same object, type, reason, action and note) within [`SERIES_WINDOW`]
//! is not created again: the first one gets an `EventSeries` (count, last observed time), as
//! kube-runtime's `Recorder` and client-go's events/v1 recorder do. Unlike kube-runtime's
//! `Recorder`, whose series key leaves the note out (the later Events of a series kept the first
//! one's note: every scheduled run's Events said the first run's tick and result), the note is
//! part of the key, as in client-go: an Event that says something new is a new Event.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
};

use k8s_openapi::{
    api::{core::v1::ObjectReference, events::v1::Event},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api, Client,
    api::{Patch, PatchParams, PostParams},
    runtime::events::EventType,
};
use serde_json::json;

/// How long after its last occurrence an Event is counted in a series rather than created anew.
pub const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);

/// What makes two Events the same occurrence.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    type_: &'static str,
    reason: String,
    action: String,
    note: String,
    regarding: (Option<String>, Option<String>, Option<String>, Option<String>),
}

/// An Event created earlier, for its series.
#[derive(Clone, Debug)]
struct Published {
    name: String,
    count: i32,
    last: Timestamp,
}

/// Publishes Events for one reporting controller; cheap to clone (the series are shared).
#[derive(Clone)]
pub struct Recorder {
    client: Client,
    controller: String,
    instance: String,
    published: Arc<Mutex<HashMap<Key, Published>>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("controller", &self.controller)
            .field("instance", &self.instance)
            .finish()
    }
}

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

impl Recorder {
    /// A recorder reporting as `controller` (`reportingController`) and `instance`
    /// (`reportingInstance`, default: the controller).
    pub fn new(client: Client, controller: &str, instance: Option<String>) -> Recorder {
        Recorder {
            client,
            controller: controller.to_owned(),
            instance: instance.unwrap_or_else(|| controller.to_owned()),
            published: Arc::default(),
        }
    }

    /// Publishes one Event about `regarding` (in its namespace): a new Event, or the next count
    /// of the series of the same Event published within [`SERIES_WINDOW`].
    pub async fn publish(
        &self,
        type_: EventType,
        reason: &str,
        action: &str,
        note: &str,
        regarding: &ObjectReference,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = Key {
            type_: type_name(type_),
            reason: reason.to_owned(),
            action: action.to_owned(),
            note: note.to_owned(),
            regarding: (
                regarding.kind.clone(),
                regarding.namespace.clone(),
                regarding.name.clone(),
                regarding.uid.clone(),
            ),
        };
        let namespace = regarding.namespace.as_deref().unwrap_or("default");
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let repeat = {
            let mut published = self.published.lock().unwrap_or_else(PoisonError::into_inner);
            published.retain(|_, p| p.last + SERIES_WINDOW > now);
            published.get(&key).cloned()
        };
        let entry = match repeat {
            Some(earlier) => {
                let count = earlier.count + 1;
                let series = json!({"series": {"count": count, "lastObservedTime": MicroTime(now)}});
                match api
                    .patch(&earlier.name, &PatchParams::default(), &Patch::Merge(&series))
                    .await
                {
                    Ok(_) => Published {
                        name: earlier.name,
                        count,
                        last: now,
                    },
                    // The API server dropped the Event already: start over.
                    Err(kube::Error::Api(e)) if e.code == 404 => {
                        self.create(&api, &key, regarding, now).await?
                    }
                    Err(e) => return Err(e),
                }
            }
            None => self.create(&api, &key, regarding, now).await?,
        };
        self.published
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, entry);
        Ok(())
    }

    async fn create(
        &self,
        api: &Api<Event>,
        key: &Key,
        regarding: &ObjectReference,
        now: Timestamp,
    ) -> Result<Published, kube::Error> {
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(&self.controller),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: regarding.namespace.clone(),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(key.type_.to_owned()),
            reason: Some(key.reason.clone()),
            action: Some(key.action.clone()),
            note: Some(key.note.clone()),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await?;
        Ok(Published {
            name,
            count: 1,
            last: now,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::Value;

    use super::*;

    /// The next request: method, path and JSON body; answered with the body itself.
    async fn answer(
        handle: &mut tower_test::mock::Handle<Request<Body>, Response<Body>>,
    ) -> (String, String, Value) {
        let (request, send) = handle.next_request().await.expect("a request");
        let method = request.method().to_string();
        let path = request.uri().path().to_owned();
        let body: Value =
            serde_json::from_slice(&request.into_body().collect_bytes().await.unwrap()).unwrap();
        send.send_response(
            Response::builder()
                .status(200)
                .body(Body::from(serde_json::to_vec(&body).unwrap()))
                .unwrap(),
        );
        (method, path, body)
    }

    #[tokio::test]
    async fn a_repeat_is_counted_and_a_new_note_is_a_new_event() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let recorder = Recorder::new(Client::new(service, "ns"), "kbo", Some("pod-1".into()));
        let regarding = ObjectReference {
            kind: Some("KafkaBackup".into()),
            namespace: Some("ns".into()),
            name: Some("nightly".into()),
            uid: Some("u1".into()),
            ..Default::default()
        };
        let publish = |note: &'static str| {
            let recorder = recorder.clone();
            let regarding = regarding.clone();
            tokio::spawn(async move {
                recorder
                    .publish(EventType::Normal, "Completed", "Run", note, &regarding)
                    .await
                    .unwrap();
            })
        };
        let events = "/apis/events.k8s.io/v1/namespaces/ns/events";

        let done = publish("run for the tick 12:00:00: 5 records");
        let (method, path, first) = answer(&mut handle).await;
        done.await.unwrap();
        assert_eq!((method.as_str(), path.as_str()), ("POST", events));
        assert_eq!(first["note"], "run for the tick 12:00:00: 5 records");
        assert_eq!(first["reportingController"], "kbo");
        assert_eq!(first["reportingInstance"], "pod-1");
        assert_eq!(first["regarding"]["uid"], "u1");
        let name = first["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("nightly."), "{name}");

        // The same Event again: a series on the first one.
        let done = publish("run for the tick 12:00:00: 5 records");
        let (method, path, patch) = answer(&mut handle).await;
        done.await.unwrap();
        assert_eq!((method.as_str(), path), ("PATCH", format!("{events}/{name}")));
        assert_eq!(patch["series"]["count"], 2);
        assert!(patch.get("note").is_none(), "{patch}");

        // Another note (the next run's tick): a new Event saying so.
        let done = publish("run for the tick 12:00:10: 7 records");
        let (method, path, next) = answer(&mut handle).await;
        done.await.unwrap();
        assert_eq!((method.as_str(), path.as_str()), ("POST", events));
        assert_eq!(next["note"], "run for the tick 12:00:10: 7 records");
        assert_ne!(next["metadata"]["name"], first["metadata"]["name"]);
    }
}
