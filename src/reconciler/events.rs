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
