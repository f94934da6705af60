//! The scenarios.

use std::time::{Duration, Instant};

use tracker_store::{Event, ReadScope, TrackerStore};

use crate::Sizes;
use crate::backends::{Backend, Opened, Raw, RawRow, redis_raw};
use crate::report::{BackendResult, Growth, Latency, Ratio, Throughput};
use crate::workload::{session_start, turn};

/// Repetitions of the growing conversation (more samples for the percentiles).
const GROWTH_CONVERSATIONS: usize = 3;
/// Turns measured at each end of the growing conversation.
const WINDOW: usize = 10;

fn fresh(what: &str) -> String {
    format!("bench-{what}-{}", uuid::Uuid::new_v4().simple())
}

/// Nearest-rank percentile of latencies, in milliseconds.
pub fn percentile(samples: &[Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let mut sorted: Vec<Duration> = samples.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1].as_secs_f64() * 1_000.0
}

fn latency(samples: &[Duration]) -> Latency {
    Latency {
        p50_ms: percentile(samples, 50.0),
        p99_ms: percentile(samples, 99.0),
        samples: samples.len(),
    }
}

/// Runs every scenario on one backend.
pub async fn run(backend: &Backend, sizes: Sizes) -> Result<BackendResult, String> {
    let mut opened = backend.open().await?;
    let mut peaks = Vec::new();
    crate::report::reset_peak_rss();
    let (growth, save) = save_growth(&mut opened, sizes.turns).await?;
    eprintln!(
        "   save p50 early {:.2} ms, late {:.2} ms",
        growth.early.p50_ms, growth.late.p50_ms
    );
    if let Some(raw) = &save.raw {
        eprintln!(
            "   one-turn save p50 {:.3} ms, raw single write {:.3} ms",
            save.store.p50_ms, raw.raw.p50_ms
        );
    }
    peaks.push(("save", crate::report::peak_rss_mib()));
    let mut throughput = Vec::new();
    crate::report::reset_peak_rss();
    for concurrency in [1, 8, 64] {
        let result = saves_per_second(&opened.store, concurrency, sizes.throughput_saves).await?;
        eprintln!(
            "   {concurrency} conversations: {:.0} saves/s",
            result.saves_per_second
        );
        throughput.push(result);
    }
    peaks.push(("throughput", crate::report::peak_rss_mib()));
    crate::report::reset_peak_rss();
    let read = latest_session_read(&mut opened, sizes.reads).await?;
    eprintln!("   latest-session read p50 {:.2} ms", read.store.p50_ms);
    peaks.push(("latest-session read", crate::report::peak_rss_mib()));
    crate::report::reset_peak_rss();
    let full = full_read(&mut opened, sizes.full_read_events, sizes.full_reads).await?;
    eprintln!(
        "   full read of {} events p50 {:.2} ms",
        sizes.full_read_events, full.store.p50_ms
    );
    peaks.push(("full read", crate::report::peak_rss_mib()));
    crate::report::reset_peak_rss();
    let bulk = bulk_import(&mut opened, sizes.bulk_conversations).await?;
    eprintln!("   bulk {:.0} events/s", bulk.store);
    peaks.push(("bulk import", crate::report::peak_rss_mib()));
    Ok(BackendResult {
        name: backend.name.to_owned(),
        label: backend.label.to_owned(),
        skipped: None,
        growth: Some(growth),
        save: Some(save),
        throughput,
        read: Some(read),
        full: Some(full),
        bulk: Some(bulk),
        rss_mib: crate::report::rss_mib(),
        peak_rss_mib: peaks
            .into_iter()
            .map(|(scenario, peak)| (scenario.to_owned(), peak))
            .collect(),
        reduced: false,
    })
}

/// Scenario 1: one conversation built turn by turn, saved after each turn, `GROWTH_CONVERSATIONS`
/// times. After each save, the same turn's rows (rendered beforehand) are written to a
/// conversation of the same layout by the driver's best single write, so that the store and
/// the raw driver are measured under the same load.
async fn save_growth(
    opened: &mut Opened,
    turns: usize,
) -> Result<(Growth, crate::report::Save), String> {
    let mut early = Vec::new();
    let mut late = Vec::new();
    let mut all = Vec::new();
    let mut raw_samples = Vec::new();
    let mut raw_how = None;
    for _ in 0..GROWTH_CONVERSATIONS {
        let id = fresh("growth");
        let raw_id = fresh("rawsave");
        let mut raw = RawWriter::new(&raw_id);
        let mut tracker = opened
            .store
            .get_or_create_tracker(&id)
            .await
            .map_err(|e| e.to_string())?;
        tracker.extend(session_start(1_700_000_000.0));
        raw.write(&mut opened.raw, &session_start(1_700_000_000.0))
            .await?;
        for n in 0..turns {
            let events = turn(n, 1_700_000_001.0 + n as f64);
            tracker.extend(events.clone());
            let started = Instant::now();
            opened
                .store
                .save(&mut tracker)
                .await
                .map_err(|e| e.to_string())?;
            let elapsed = started.elapsed();
            all.push(elapsed);
            if n < WINDOW {
                early.push(elapsed);
            } else if n >= turns.saturating_sub(WINDOW) {
                late.push(elapsed);
            }
            if let Some(elapsed) = raw.write(&mut opened.raw, &events).await? {
                raw_samples.push(elapsed);
            }
        }
        opened.store.delete(&id).await.map_err(|e| e.to_string())?;
        raw_how = raw.how;
        if raw_how.is_some() {
            // The raw rows are in the store's layout: the store deletes them.
            opened
                .store
                .delete(&raw_id)
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    let early = latency(&early);
    let late = latency(&late);
    let growth = Growth {
        turns,
        ratio: if early.p50_ms > 0.0 {
            late.p50_ms / early.p50_ms
        } else {
            0.0
        },
        early,
        late,
    };
    let save = crate::report::Save {
        store: latency(&all),
        raw: raw_how.map(|how| Ratio {
            raw: latency(&raw_samples),
            how: how.to_owned(),
        }),
    };
    Ok((growth, save))
}

/// Writes turns to one conversation with the raw driver's best single write.
struct RawWriter<'a> {
    id: &'a str,
    version: u64,
    how: Option<&'static str>,
}

impl<'a> RawWriter<'a> {
    fn new(id: &'a str) -> Self {
        Self {
            id,
            version: 0,
            how: None,
        }
    }

    /// Writes `events` after the ones written so far; how long the write took, `None` for a
    /// backend without raw access.
    async fn write(&mut self, raw: &mut Raw, events: &[Event]) -> Result<Option<Duration>, String> {
        let elapsed = match raw {
            Raw::None => return Ok(None),
            Raw::Sql(raw) => {
                let rows = RawRow::render(self.id, self.version, events)?;
                let started = Instant::now();
                raw.insert(self.id, &rows).await?;
                self.how = Some(
                    "one multi-row INSERT in autocommit, a prepared statement the connection keeps",
                );
                started.elapsed()
            }
            Raw::Redis(store) => {
                let texts: Vec<String> = events.iter().map(Event::to_rasa_json).collect();
                let started = Instant::now();
                redis_raw::save(store, self.id, self.version, &texts).await?;
                self.how = Some("RPUSH of the events and HSET of the head's version, pipelined");
                started.elapsed()
            }
        };
        self.version += events.len() as u64;
        Ok(Some(elapsed))
    }
}

/// Scenario 2: `total` saves of one turn each, spread over `concurrency` conversations.
async fn saves_per_second(
    store: &TrackerStore,
    concurrency: usize,
    total: usize,
) -> Result<Throughput, String> {
    let per_task = (total / concurrency).max(1);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let id = fresh("throughput");
            let mut tracker = store.get_or_create_tracker(&id).await?;
            tracker.extend(session_start(1_700_000_000.0));
            for n in 0..per_task {
                tracker.extend(turn(n, 1_700_000_001.0 + n as f64));
                store.save(&mut tracker).await?;
            }
            Ok::<_, tracker_store::Error>(id)
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(
            task.await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?,
        );
    }
    let seconds = started.elapsed().as_secs_f64();
    for id in ids {
        store.delete(&id).await.map_err(|e| e.to_string())?;
    }
    let saves = (per_task * concurrency) as f64;
    Ok(Throughput {
        concurrency,
        saves_per_second: saves / seconds,
        // 4 events per turn; the first save also carries the session start.
        events_per_second: (saves * 4.0 + 3.0 * concurrency as f64) / seconds,
    })
}

/// A conversation of 1,000 events whose latest session has 50.
pub(crate) fn long_conversation() -> (Vec<Event>, usize) {
    let mut events = session_start(1_600_000_000.0);
    let mut n = 0;
    while events.len() < 944 {
        events.extend(turn(n, 1_600_000_001.0 + n as f64));
        n += 1;
    }
    while events.len() < 950 {
        events.push(Event::bot("filler").at(1_600_100_000.0));
    }
    let session = events.len();
    events.extend(session_start(1_700_000_000.0));
    while events.len() < 997 {
        events.extend(turn(n, 1_700_000_001.0 + n as f64));
        n += 1;
    }
    while events.len() < 1_000 {
        events.push(Event::bot("filler").at(1_700_100_000.0));
    }
    (events, session)
}

/// Scenario 3: the latest session (50 events) of a 1,000-event conversation.
async fn latest_session_read(
    opened: &mut Opened,
    reads: usize,
) -> Result<crate::report::Read, String> {
    let id = fresh("read");
    let (events, session_start_index) = long_conversation();
    write_conversation(opened, &id, &events, 90).await?;
    let expected = events.len() - session_start_index;
    let offset = session_start_index as u64 + 1;
    timed_reads(
        opened,
        &id,
        ReadScope::LatestSession,
        expected,
        reads,
        async |raw: &mut Raw| match raw {
            Raw::None => Ok(None),
            Raw::Sql(raw) => Ok(Some((
                raw.latest_session(&id).await?.len(),
                "one SQL query finding the session start itself",
            ))),
            Raw::Redis(store) => Ok(Some((
                redis_raw::latest_session(store, &id, offset).await?.len(),
                "LRANGE from an offset the client already knows",
            ))),
        },
    )
    .await
}

/// Scenario 3b: a whole conversation of `events` events, read `reads` times.
async fn full_read(
    opened: &mut Opened,
    events: usize,
    reads: usize,
) -> Result<crate::report::Read, String> {
    let id = fresh("full");
    let mut conversation = session_start(1_600_000_000.0);
    let mut n = 0;
    while conversation.len() < events {
        conversation.extend(turn(n, 1_600_000_001.0 + n as f64));
        n += 1;
    }
    conversation.truncate(events);
    let chunk = opened
        .store
        .capabilities()
        .max_events_per_append
        .unwrap_or(500)
        .min(500);
    write_conversation(opened, &id, &conversation, chunk).await?;
    timed_reads(
        opened,
        &id,
        ReadScope::All,
        events,
        reads,
        async |raw: &mut Raw| match raw {
            Raw::None => Ok(None),
            Raw::Sql(raw) => Ok(Some((
                raw.full(&id).await?.len(),
                "one SQL query, the rows' `data` by `seq`",
            ))),
            Raw::Redis(store) => Ok(Some((
                redis_raw::full(store, &id).await?.len(),
                "LRANGE of the whole list",
            ))),
        },
    )
    .await
}

/// Appends `events` to a new conversation `id`, `chunk` events an append.
async fn write_conversation(
    opened: &Opened,
    id: &str,
    events: &[Event],
    chunk: usize,
) -> Result<(), String> {
    let mut version = 0;
    for chunk in events.chunks(chunk) {
        version = opened
            .store
            .append(id, version, chunk)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Reads `id` (`scope`, `expected` events) `reads` times through the store, each read
/// followed by the raw driver's read (`raw_read`: the rows it read and how, or `None`
/// without a raw baseline), so both run under the same load; then deletes the conversation.
async fn timed_reads(
    opened: &mut Opened,
    id: &str,
    scope: ReadScope,
    expected: usize,
    reads: usize,
    mut raw_read: impl AsyncFnMut(&mut Raw) -> Result<Option<(usize, &'static str)>, String>,
) -> Result<crate::report::Read, String> {
    let mut store_samples = Vec::with_capacity(reads);
    let mut raw_samples = Vec::with_capacity(reads);
    let mut raw_label = None;
    for _ in 0..reads {
        let started = Instant::now();
        let read = opened
            .store
            .read(id, scope)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("the conversation vanished")?;
        store_samples.push(started.elapsed());
        if read.events.len() != expected {
            return Err(format!(
                "read {} events, expected {expected}",
                read.events.len()
            ));
        }
        let started = Instant::now();
        let Some((rows, how)) = raw_read(&mut opened.raw).await? else {
            continue;
        };
        raw_samples.push(started.elapsed());
        raw_label = Some(how);
        if rows != expected {
            return Err(format!("raw read {rows} rows, expected {expected}"));
        }
    }
    opened.store.delete(id).await.map_err(|e| e.to_string())?;
    Ok(crate::report::Read {
        store: latency(&store_samples),
        raw: raw_label.map(|how| Ratio {
            raw: latency(&raw_samples),
            how: how.to_owned(),
        }),
    })
}

/// Conversations per `import_batch` call in the bulk scenario (as `tracker import` and
/// `migrate` batch them).
const BULK_BATCH: usize = 500;

/// Scenario 4: `conversations` × 20 events through the store's bulk copy
/// ([`tracker_core::TrackerStore::import_batch`]), and through the raw driver.
async fn bulk_import(
    opened: &mut Opened,
    conversations: usize,
) -> Result<crate::report::Bulk, String> {
    let mut conversation = session_start(1_700_000_000.0);
    for n in 0..4 {
        conversation.extend(turn(n, 1_700_000_001.0 + n as f64));
    }
    conversation.push(Event::bot("bye").at(1_700_000_010.0));
    let events_per = conversation.len();
    let prefix = fresh("bulk");
    let ids: Vec<String> = (0..conversations)
        .map(|n| format!("{prefix}-{n}"))
        .collect();

    let started = Instant::now();
    for chunk in ids.chunks(BULK_BATCH) {
        let batch: Vec<(&str, &[Event])> = chunk
            .iter()
            .map(|id| (id.as_str(), conversation.as_slice()))
            .collect();
        for result in opened.store.import_batch(&batch).await {
            result.map_err(|e| e.to_string())?;
        }
    }
    let store_rate = (conversations * events_per) as f64 / started.elapsed().as_secs_f64();
    for chunk in ids.chunks(64) {
        futures::future::try_join_all(chunk.iter().map(|id| opened.store.delete(id)))
            .await
            .map_err(|e| e.to_string())?;
    }

    let texts: Vec<String> = conversation.iter().map(Event::to_rasa_json).collect();
    let raw_prefix = fresh("rawbulk");
    let raw_rate = match &mut opened.raw {
        Raw::None => None,
        Raw::Sql(raw) => {
            let rows: Vec<(String, i64, String)> = (0..conversations)
                .flat_map(|n| {
                    let id = format!("{raw_prefix}-{n}");
                    texts
                        .iter()
                        .enumerate()
                        .map(move |(i, text)| (id.clone(), i as i64 + 1, text.clone()))
                })
                .collect();
            let started = Instant::now();
            raw.bulk_insert(&rows).await?;
            Some((
                rows.len() as f64 / started.elapsed().as_secs_f64(),
                "multi-row INSERTs of 1,000 rows".to_owned(),
            ))
        }
        Raw::Redis(store) => {
            let batch: Vec<(String, Vec<String>)> = (0..conversations)
                .map(|n| (format!("{raw_prefix}-{n}"), texts.clone()))
                .collect();
            let started = Instant::now();
            redis_raw::bulk_insert(store, &batch).await?;
            Some((
                (conversations * events_per) as f64 / started.elapsed().as_secs_f64(),
                "pipelined RPUSH + HSET, 500 conversations per pipeline".to_owned(),
            ))
        }
    };
    // The raw rows use the store's layout, so the store can delete them.
    if raw_rate.is_some() {
        let raw_ids: Vec<String> = (0..conversations)
            .map(|n| format!("{raw_prefix}-{n}"))
            .collect();
        for chunk in raw_ids.chunks(64) {
            let _ = futures::future::join_all(chunk.iter().map(|id| opened.store.delete(id))).await;
        }
    }
    Ok(crate::report::Bulk {
        conversations,
        events_per_conversation: events_per,
        store: store_rate,
        raw: raw_rate,
    })
}
