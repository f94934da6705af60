//! The four scenarios.

use std::time::{Duration, Instant};

use futures::StreamExt;
use tracker_store::{Event, ReadScope, TrackerStore};

use crate::Sizes;
use crate::backends::{Backend, Opened, Raw, redis_raw};
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
    let growth = save_growth(&opened.store, sizes.turns).await?;
    eprintln!(
        "   save p50 early {:.2} ms, late {:.2} ms",
        growth.early.p50_ms, growth.late.p50_ms
    );
    let mut throughput = Vec::new();
    for concurrency in [1, 8, 64] {
        let result = saves_per_second(&opened.store, concurrency, sizes.throughput_saves).await?;
        eprintln!(
            "   {concurrency} conversations: {:.0} saves/s",
            result.saves_per_second
        );
        throughput.push(result);
    }
    let read = latest_session_read(&mut opened, sizes.reads).await?;
    eprintln!("   latest-session read p50 {:.2} ms", read.store.p50_ms);
    let bulk = bulk_import(&mut opened, sizes.bulk_conversations).await?;
    eprintln!("   bulk {:.0} events/s", bulk.store);
    Ok(BackendResult {
        name: backend.name.to_owned(),
        label: backend.label.to_owned(),
        skipped: None,
        growth: Some(growth),
        throughput,
        read: Some(read),
        bulk: Some(bulk),
        rss_mib: crate::report::rss_mib(),
        reduced: false,
    })
}

/// Scenario 1: one conversation built turn by turn, saved after each turn.
async fn save_growth(store: &TrackerStore, turns: usize) -> Result<Growth, String> {
    let mut early = Vec::new();
    let mut late = Vec::new();
    for _ in 0..GROWTH_CONVERSATIONS {
        let id = fresh("growth");
        let mut tracker = store
            .get_or_create_tracker(&id)
            .await
            .map_err(|e| e.to_string())?;
        tracker.extend(session_start(1_700_000_000.0));
        for n in 0..turns {
            tracker.extend(turn(n, 1_700_000_001.0 + n as f64));
            let started = Instant::now();
            store.save(&mut tracker).await.map_err(|e| e.to_string())?;
            let elapsed = started.elapsed();
            if n < WINDOW {
                early.push(elapsed);
            } else if n >= turns.saturating_sub(WINDOW) {
                late.push(elapsed);
            }
        }
        store.delete(&id).await.map_err(|e| e.to_string())?;
    }
    let early = latency(&early);
    let late = latency(&late);
    Ok(Growth {
        turns,
        ratio: if early.p50_ms > 0.0 {
            late.p50_ms / early.p50_ms
        } else {
            0.0
        },
        early,
        late,
    })
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
fn long_conversation() -> (Vec<Event>, usize) {
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
    let mut version = 0;
    for chunk in events.chunks(90) {
        version = opened
            .store
            .append(&id, version, chunk)
            .await
            .map_err(|e| e.to_string())?;
    }
    let expected = events.len() - session_start_index;
    let mut store_samples = Vec::with_capacity(reads);
    for _ in 0..reads {
        let started = Instant::now();
        let read = opened
            .store
            .read(&id, ReadScope::LatestSession)
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
    }
    let mut raw_samples = Vec::with_capacity(reads);
    let raw_label = match &mut opened.raw {
        Raw::None => None,
        Raw::Sql(raw) => {
            for _ in 0..reads {
                let started = Instant::now();
                let rows = raw.latest_session(&id).await?;
                raw_samples.push(started.elapsed());
                if rows.len() != expected {
                    return Err(format!("raw read {} rows, expected {expected}", rows.len()));
                }
            }
            Some("one SQL query finding the session start itself")
        }
        Raw::Redis(store) => {
            for _ in 0..reads {
                let started = Instant::now();
                let values =
                    redis_raw::latest_session(store, &id, session_start_index as u64 + 1).await?;
                raw_samples.push(started.elapsed());
                if values.len() != expected {
                    return Err(format!(
                        "raw read {} values, expected {expected}",
                        values.len()
                    ));
                }
            }
            Some("LRANGE from an offset the client already knows")
        }
    };
    opened.store.delete(&id).await.map_err(|e| e.to_string())?;
    let store = latency(&store_samples);
    let raw = raw_label.map(|how| Ratio {
        raw: latency(&raw_samples),
        how: how.to_owned(),
    });
    Ok(crate::report::Read { store, raw })
}

/// Scenario 4: `conversations` × 20 events through the store, and through the raw driver.
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
    let results: Vec<_> = futures::stream::iter(ids.iter())
        .map(|id| {
            let store = opened.store.clone();
            let events = conversation.clone();
            async move { store.append(id, 0, &events).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for result in results {
        result.map_err(|e| e.to_string())?;
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
