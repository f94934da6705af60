//! `NativeStore`: a tracker-store store as Python sees it. Every operation but `connect`
//! returns an awaitable driven by tokio; the GIL is released while it runs.

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyDict;
use serde_json::Value;
use tracker_store::{
    Error, Event, JsonMap, ReadScope, Registration, Registry, Store, StoreConfig, TrackerStore,
};

use crate::errors;
use crate::save::{self, RetryPolicy, Saved};

/// Every backend this module is built with, in the registry's order.
const BACKENDS: [Registration; 5] = [
    tracker_store::memory::REGISTRATION,
    tracker_store::sql::REGISTRATION,
    tracker_store::redis::REGISTRATION,
    tracker_store::mongo::REGISTRATION,
    tracker_store::dynamo::REGISTRATION,
];

/// The backend `name` selects, by its name or an alias (case-insensitively).
fn backend(name: &str) -> PyResult<&'static Registration> {
    BACKENDS
        .iter()
        .find(|registration| registration.matches(name))
        .ok_or_else(|| {
            let names: Vec<String> = BACKENDS
                .iter()
                .map(|registration| registration.aliases.join("|"))
                .collect();
            errors::config(format!(
                "backend: unknown tracker store backend {name:?}; one of: {}",
                names.join(", ")
            ))
        })
}

/// Parses the JSON text of an object of configuration keys.
fn parse_keys(keys_json: &str) -> PyResult<JsonMap> {
    match serde_json::from_str(keys_json) {
        Ok(Value::Object(keys)) => Ok(keys),
        Ok(_) => Err(errors::config("the configuration keys must be a mapping")),
        Err(error) => Err(errors::config(format!(
            "the configuration keys are not JSON: {error}"
        ))),
    }
}

/// Parses the JSON text of a list of Rasa events (`[event.as_dict(), ...]`).
fn parse_events(events_json: &str) -> Result<Vec<Event>, Error> {
    let values: Vec<Value> = serde_json::from_str(events_json)
        .map_err(|error| Error::invalid_input_with("the events are not a JSON list", error))?;
    values
        .into_iter()
        .enumerate()
        .map(|(index, value)| {
            Event::from_value(value).map_err(|error| {
                Error::invalid_input_with(
                    format!("event {}: {}", index + 1, error.message()),
                    error,
                )
            })
        })
        .collect()
}

/// The JSON array of events given as their JSON texts.
fn json_array(events: &[String]) -> String {
    let length = events.iter().map(|event| event.len() + 2).sum::<usize>();
    let mut text = String::with_capacity(length + 2);
    text.push('[');
    for (index, event) in events.iter().enumerate() {
        if index > 0 {
            text.push_str(", ");
        }
        text.push_str(event);
    }
    text.push(']');
    text
}

/// What a save returns to Python: `(version, first_seq, written, moved_from, moved_to,
/// recovered)`; `written` lists the indexes of the events written.
type SavedTuple = (u64, u64, Vec<usize>, Option<u64>, Option<u64>, bool);

fn saved_tuple(saved: Saved) -> SavedTuple {
    let (from, to) = saved.moved.unzip();
    (
        saved.version,
        saved.first_seq,
        saved.written,
        from,
        to,
        saved.recovered,
    )
}

/// A conversation store built by tracker-store's registry from an `endpoints.yml` section.
#[pyclass(frozen, module = "tracker_store._native")]
pub struct NativeStore {
    store: TrackerStore,
    retry: RetryPolicy,
    backend: &'static str,
}

impl NativeStore {
    fn store(&self) -> TrackerStore {
        self.store.clone()
    }
}

#[pymethods]
impl NativeStore {
    /// The keys the backend `backend` (a name or alias such as `sql`, `postgresql`,
    /// `mongod`) reads.
    #[staticmethod]
    fn known_keys(backend_name: &str) -> PyResult<Vec<&'static str>> {
        Ok((backend(backend_name)?.keys)().to_vec())
    }

    /// The backend's type name (`memory`, `sql`, `redis`, `mongod` or `dynamo`) for a name or
    /// alias.
    #[staticmethod]
    fn backend_name(backend_name: &str) -> PyResult<&'static str> {
        Ok(backend(backend_name)?.name)
    }

    /// Builds the store `backend` names from `keys_json` (the JSON text of the section's keys,
    /// Rasa's `url` as `url`), waiting for it to connect (and set up its schema where that
    /// is configured) with the GIL released. `retry_seconds` bounds the retries of temporary
    /// failures of later operations.
    ///
    /// Raises `ConfigError` naming the key for an unknown key or an invalid value, and
    /// `UnavailableError` when the server cannot be reached.
    #[staticmethod]
    #[pyo3(signature = (backend_name, keys_json, retry_seconds = 5.0))]
    fn connect(
        py: Python<'_>,
        backend_name: &str,
        keys_json: &str,
        retry_seconds: f64,
    ) -> PyResult<Self> {
        let registration = backend(backend_name)?;
        let retry = Duration::try_from_secs_f64(retry_seconds)
            .map_err(|_| errors::config("retry_seconds must be a number of seconds, 0 or more"))?;
        let config = StoreConfig {
            store_type: Some(backend_name.to_owned()),
            keys: parse_keys(keys_json)?,
        };
        let registry = Registry::with_builtins();
        let unknown = registry.unknown_keys(&config);
        if !unknown.is_empty() {
            return Err(errors::config(format!(
                "{}: not a key of the {} tracker store (its keys: {})",
                unknown.join(", "),
                registration.name,
                (registration.keys)().join(", ")
            )));
        }
        let runtime = pyo3_async_runtimes::tokio::get_runtime();
        let store: Arc<dyn Store> = py
            .detach(|| runtime.block_on(registry.build(&config)))
            .map_err(|error| errors::to_py(&error))?;
        Ok(Self {
            store: TrackerStore::from_arc(store),
            retry: RetryPolicy { budget: retry },
            backend: registration.name,
        })
    }

    /// The backend's type name (`memory`, `sql`, `redis`, `mongod`, `dynamo`).
    #[getter]
    fn backend(&self) -> &'static str {
        self.backend
    }

    /// The store's name in logs and errors (`postgres`, `sqlite`, `redis`, ...).
    #[getter]
    fn name(&self) -> String {
        self.store.store().name().to_owned()
    }

    /// The store's limits and capabilities, as a dict.
    fn capabilities<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let caps = self.store.capabilities();
        let dict = PyDict::new(py);
        dict.set_item("max_events_per_append", caps.max_events_per_append)?;
        dict.set_item("max_event_bytes", caps.max_event_bytes)?;
        dict.set_item("max_append_bytes", caps.max_append_bytes)?;
        dict.set_item("native_latest_session", caps.native_latest_session)?;
        dict.set_item("expiry", caps.expiry)?;
        Ok(dict)
    }

    /// Awaitable: `None` if the conversation does not exist, else `(version, first_seq,
    /// events_json)`: its version, the sequence number of the first event read, and the JSON
    /// text of the events read — the latest session, or every event when `full`.
    fn read<'py>(
        &self,
        py: Python<'py>,
        sender_id: String,
        full: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store();
        let retry = self.retry;
        let scope = if full {
            ReadScope::All
        } else {
            ReadScope::LatestSession
        };
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let conversation = save::with_retry(retry, || store.read_json(&sender_id, scope))
                .await
                .map_err(|error| errors::to_py(&error))?;
            Ok(conversation.map(|conversation| {
                (
                    conversation.version,
                    conversation.first_seq,
                    json_array(&conversation.events),
                )
            }))
        })
    }

    /// Awaitable: appends the events of `events_json` (a JSON list of Rasa event dicts) that
    /// a tracker read at `expected_version` gained; after another writer's events if one
    /// appended first. Returns `(version, first_seq, written, moved_from, moved_to,
    /// recovered)`.
    fn append<'py>(
        &self,
        py: Python<'py>,
        sender_id: String,
        expected_version: u64,
        events_json: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store();
        let retry = self.retry;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let result = async {
                let events = parse_events(&events_json)?;
                save::append_new(&store, &sender_id, expected_version, &events, retry).await
            }
            .await;
            result
                .map(saved_tuple)
                .map_err(|error| errors::to_py(&error))
        })
    }

    /// Awaitable: appends those of the events of `events_json` the conversation does not hold
    /// yet (compared by their JSON), in order — for a tracker whose reading is unknown.
    /// Returns what `append` returns.
    fn merge<'py>(
        &self,
        py: Python<'py>,
        sender_id: String,
        events_json: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store();
        let retry = self.retry;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let result = async {
                let events = parse_events(&events_json)?;
                save::merge(&store, &sender_id, &events, retry).await
            }
            .await;
            result
                .map(saved_tuple)
                .map_err(|error| errors::to_py(&error))
        })
    }

    /// Awaitable: the conversation's version (its number of events; 0 if it does not exist).
    fn version<'py>(&self, py: Python<'py>, sender_id: String) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store();
        let retry = self.retry;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            save::with_retry(retry, || store.version(&sender_id))
                .await
                .map_err(|error| errors::to_py(&error))
        })
    }

    /// Awaitable: deletes a conversation; whether it existed.
    fn delete<'py>(&self, py: Python<'py>, sender_id: String) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            store
                .delete(&sender_id)
                .await
                .map_err(|error| errors::to_py(&error))
        })
    }

    /// Awaitable: one page of conversation ids, `(ids, next_cursor)`; `next_cursor` is `None`
    /// on the last page.
    #[pyo3(signature = (cursor = None, limit = 1000))]
    fn list<'py>(
        &self,
        py: Python<'py>,
        cursor: Option<String>,
        limit: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let store = self.store();
        let retry = self.retry;
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            let page = save::with_retry(retry, || store.list(cursor.clone(), limit))
                .await
                .map_err(|error| errors::to_py(&error))?;
            Ok((page.sender_ids, page.next_cursor))
        })
    }

    fn __repr__(&self) -> String {
        format!(
            "NativeStore(backend={:?}, store={:?})",
            self.backend,
            self.name()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_rasa_text() {
        // Python: json.dumps([BotUttered("hi", timestamp=1700000000.5).as_dict()]) in Rasa 3.6.
        let text = r#"[{"event": "bot", "timestamp": 1700000000.5, "text": "hi", "data": {}, "metadata": {}}]"#;
        let events = parse_events(text).expect("parses");
        let texts: Vec<String> = events.iter().map(Event::to_rasa_json).collect();
        assert_eq!(json_array(&texts), text);
    }

    #[test]
    fn every_backend_is_registered_under_its_rasa_name() {
        let names: Vec<&str> = BACKENDS.iter().map(|r| r.name).collect();
        assert_eq!(names, ["memory", "sql", "redis", "mongod", "dynamo"]);
        assert!(backend("PostgreSQL").is_ok());
        assert!(backend("mongodb").is_ok());
    }
}
