//! Results, and the Markdown and JSON reports.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};

use crate::Sizes;
use crate::backends::Backend;

/// Latency percentiles.
#[derive(Debug, Clone)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub samples: usize,
}

/// Scenario 1.
#[derive(Debug, Clone)]
pub struct Growth {
    pub turns: usize,
    pub early: Latency,
    pub late: Latency,
    /// Late p50 / early p50.
    pub ratio: f64,
}

/// Scenario 2, one concurrency level.
#[derive(Debug, Clone)]
pub struct Throughput {
    pub concurrency: usize,
    pub saves_per_second: f64,
    pub events_per_second: f64,
}

/// A raw-driver baseline.
#[derive(Debug, Clone)]
pub struct Ratio {
    pub raw: Latency,
    pub how: String,
}

/// Scenario 3.
#[derive(Debug, Clone)]
pub struct Read {
    pub store: Latency,
    pub raw: Option<Ratio>,
}

/// Scenario 4.
#[derive(Debug, Clone)]
pub struct Bulk {
    pub conversations: usize,
    pub events_per_conversation: usize,
    /// Events per second through the store.
    pub store: f64,
    /// Events per second through the raw driver, and how.
    pub raw: Option<(f64, String)>,
}

/// Everything measured on one backend.
#[derive(Debug, Clone)]
pub struct BackendResult {
    pub name: String,
    pub label: String,
    pub skipped: Option<String>,
    pub growth: Option<Growth>,
    pub throughput: Vec<Throughput>,
    pub read: Option<Read>,
    pub bulk: Option<Bulk>,
    pub rss_mib: Option<f64>,
    /// Measured with the small stand-in sizes.
    pub reduced: bool,
}

impl BackendResult {
    /// A backend that could not be measured.
    pub fn skipped(backend: &Backend, why: String) -> Self {
        Self {
            name: backend.name.to_owned(),
            label: backend.label.to_owned(),
            skipped: Some(why),
            growth: None,
            throughput: Vec::new(),
            read: None,
            bulk: None,
            rss_mib: None,
            reduced: false,
        }
    }
}

/// The process's resident memory (VmRSS), in MiB.
pub fn rss_mib() -> Option<f64> {
    status_field("VmRSS:")
}

fn peak_rss_mib() -> Option<f64> {
    status_field("VmHWM:")
}

fn status_field(name: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with(name))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// One run of the benchmark.
pub struct Run {
    quick: bool,
    sizes: Sizes,
    results: Vec<BackendResult>,
    machine: String,
    date: String,
    peak_rss_mib: Option<f64>,
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let memory = status_meminfo().map_or(String::new(), |gib| format!(", {gib:.0} GiB memory"));
    format!("{cores} cores ({cpu}){memory}, {}", std::env::consts::OS)
}

fn status_meminfo() -> Option<f64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0 / 1024.0)
}

fn ms(latency: &Latency) -> String {
    format!("{:.2} / {:.2}", latency.p50_ms, latency.p99_ms)
}

impl Run {
    /// Collects a run's results with the machine's description and the date.
    pub fn new(quick: bool, sizes: Sizes, results: Vec<BackendResult>) -> Self {
        Self {
            quick,
            sizes,
            results,
            machine: machine(),
            date: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
                .unwrap_or_else(|| "unknown date".to_owned()),
            peak_rss_mib: peak_rss_mib(),
        }
    }

    /// Writes the Markdown and JSON reports.
    pub fn write(&self, markdown: &Path, json: &Path) -> std::io::Result<()> {
        if let Some(parent) = markdown.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(markdown, self.markdown())?;
        let text = serde_json::to_string_pretty(&self.json()).map_err(std::io::Error::other)?;
        std::fs::write(json, text + "\n")
    }

    fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Benchmarks\n");
        let _ = writeln!(
            out,
            "Produced by `cargo xtask bench{}` on {}, {}. Every backend runs against a local \
             server on the same machine as the benchmark (loopback), so the numbers compare \
             backends and show the store's overhead; they are not a production deployment's. \
             Latencies are p50 / p99 in milliseconds. Peak memory of the benchmark process: {}.\n",
            if self.quick { " --quick" } else { "" },
            self.date,
            self.machine,
            self.peak_rss_mib
                .map_or("unknown".to_owned(), |m| format!("{m:.0} MiB"))
        );
        let s = &self.sizes;
        let _ = writeln!(
            out,
            "## 1. Save cost as a conversation grows\n\nOne conversation built turn by turn \
             (`action_listen`, a user message with a full NLU result, an action, a bot message), \
             saved after every turn, {} times over. Early = turns 1–10, late = turns {}–{}. \
             Append-only stores should keep late/early near 1; Rasa's Redis and DynamoDB stores \
             rewrite the whole conversation on every save.\n",
            3,
            s.turns.saturating_sub(9),
            s.turns
        );
        let _ = writeln!(
            out,
            "| backend | early save | late save | late / early (p50) |"
        );
        let _ = writeln!(out, "|---|---|---|---|");
        for result in &self.results {
            match &result.growth {
                Some(g) => {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {:.2} |",
                        result.name,
                        ms(&g.early),
                        ms(&g.late),
                        g.ratio
                    );
                }
                None => self.skipped_row(&mut out, result, 3),
            }
        }
        let _ = writeln!(
            out,
            "\n## 2. Throughput\n\n{} saves of one turn (4 events) each, spread over 1, 8 and 64 \
             concurrent conversations.\n",
            s.throughput_saves
        );
        let _ = writeln!(
            out,
            "| backend | 1: saves/s (events/s) | 8: saves/s (events/s) | 64: saves/s (events/s) |"
        );
        let _ = writeln!(out, "|---|---|---|---|");
        for result in &self.results {
            if result.throughput.is_empty() {
                self.skipped_row(&mut out, result, 3);
                continue;
            }
            let cells: Vec<String> = result
                .throughput
                .iter()
                .map(|t| format!("{:.0} ({:.0})", t.saves_per_second, t.events_per_second))
                .collect();
            let _ = writeln!(out, "| {} | {} |", result.name, cells.join(" | "));
        }
        let _ = writeln!(
            out,
            "\n## 3. Latest-session read\n\nThe latest session (50 events) of a 1,000-event \
             conversation, {} reads: the store's read (fetch and parse into events) next to the \
             raw driver fetching the same rows as text.\n",
            s.reads
        );
        let _ = writeln!(
            out,
            "| backend | store | raw driver | store / raw (p50) | raw query |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        for result in &self.results {
            match &result.read {
                Some(read) => {
                    let (raw, ratio, how) = match &read.raw {
                        Some(r) => (
                            ms(&r.raw),
                            format!("{:.2}", read.store.p50_ms / r.raw.p50_ms.max(1e-9)),
                            r.how.clone(),
                        ),
                        None => ("-".to_owned(), "-".to_owned(), "-".to_owned()),
                    };
                    let _ = writeln!(
                        out,
                        "| {} | {} | {raw} | {ratio} | {how} |",
                        result.name,
                        ms(&read.store)
                    );
                }
                None => self.skipped_row(&mut out, result, 4),
            }
        }
        let _ = writeln!(
            out,
            "\n## 4. Bulk import\n\n{} conversations × 20 events, appended through the store \
             (16 at a time), next to the raw driver's bulk path into the same layout.\n",
            s.bulk_conversations
        );
        let _ = writeln!(
            out,
            "| backend | store events/s | raw events/s | store / raw | raw path |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        for result in &self.results {
            match &result.bulk {
                Some(bulk) => {
                    let (raw, ratio, how) = match &bulk.raw {
                        Some((rate, how)) => (
                            format!("{rate:.0}"),
                            format!("{:.2}", bulk.store / rate.max(1e-9)),
                            how.clone(),
                        ),
                        None => ("-".to_owned(), "-".to_owned(), "-".to_owned()),
                    };
                    let _ = writeln!(
                        out,
                        "| {} | {:.0} | {raw} | {ratio} | {how} |",
                        result.name, bulk.store
                    );
                }
                None => self.skipped_row(&mut out, result, 4),
            }
        }
        let _ = writeln!(out, "\n## Backends\n");
        for result in &self.results {
            let _ = writeln!(
                out,
                "- `{}`: {}{}{}",
                result.name,
                result.label,
                if result.reduced {
                    "; measured with small sizes (50 turns, 64 saves per concurrency level, 20 reads, 50 conversations imported)"
                } else {
                    ""
                },
                result
                    .skipped
                    .as_ref()
                    .map_or(String::new(), |why| format!(" — not measured: {why}"))
            );
        }
        out
    }

    fn skipped_row(&self, out: &mut String, result: &BackendResult, cells: usize) {
        let _ = writeln!(
            out,
            "| {} | {} |",
            result.name,
            vec!["not measured"; cells].join(" | ")
        );
    }

    fn json(&self) -> Value {
        let latency =
            |l: &Latency| json!({"p50_ms": l.p50_ms, "p99_ms": l.p99_ms, "samples": l.samples});
        json!({
            "date": self.date,
            "machine": self.machine,
            "quick": self.quick,
            "peak_rss_mib": self.peak_rss_mib,
            "sizes": {
                "turns": self.sizes.turns,
                "throughput_saves": self.sizes.throughput_saves,
                "reads": self.sizes.reads,
                "bulk_conversations": self.sizes.bulk_conversations,
            },
            "backends": self.results.iter().map(|r| json!({
                "name": r.name,
                "label": r.label,
                "skipped": r.skipped,
                "rss_mib_after": r.rss_mib,
                "quick_sizes": r.reduced,
                "save_growth": r.growth.as_ref().map(|g| json!({
                    "turns": g.turns, "early": latency(&g.early), "late": latency(&g.late), "ratio_p50": g.ratio,
                })),
                "throughput": r.throughput.iter().map(|t| json!({
                    "concurrency": t.concurrency, "saves_per_second": t.saves_per_second,
                    "events_per_second": t.events_per_second,
                })).collect::<Vec<_>>(),
                "latest_session_read": r.read.as_ref().map(|read| json!({
                    "store": latency(&read.store),
                    "raw": read.raw.as_ref().map(|raw| json!({"latency": latency(&raw.raw), "how": raw.how})),
                })),
                "bulk": r.bulk.as_ref().map(|b| json!({
                    "conversations": b.conversations,
                    "events_per_conversation": b.events_per_conversation,
                    "store_events_per_second": b.store,
                    "raw_events_per_second": b.raw.as_ref().map(|(rate, _)| rate),
                    "raw_how": b.raw.as_ref().map(|(_, how)| how),
                })),
            })).collect::<Vec<_>>(),
        })
    }
}
