//! Results, and the Markdown and JSON reports.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{Value, json};

use crate::Sizes;
use crate::backends::Backend;
use crate::event_model::EventModel;
use crate::rasa_flow::RasaFlow;

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

/// Scenario 1: every one-turn save, next to the raw single write.
#[derive(Debug, Clone)]
pub struct Save {
    pub store: Latency,
    pub raw: Option<Ratio>,
}

/// Scenario 3 (latest session, full read).
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
    pub save: Option<Save>,
    pub throughput: Vec<Throughput>,
    pub read: Option<Read>,
    pub full: Option<Read>,
    pub bulk: Option<Bulk>,
    pub rss_mib: Option<f64>,
    /// Peak resident memory of the process during each scenario (scenario, MiB).
    pub peak_rss_mib: Vec<(String, Option<f64>)>,
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
            save: None,
            throughput: Vec::new(),
            read: None,
            full: None,
            bulk: None,
            rss_mib: None,
            peak_rss_mib: Vec::new(),
            reduced: false,
        }
    }
}

/// The process's resident memory (VmRSS), in MiB.
pub fn rss_mib() -> Option<f64> {
    status_field("VmRSS:")
}

/// The process's peak resident memory (VmHWM) since the last [`reset_peak_rss`], in MiB.
pub fn peak_rss_mib() -> Option<f64> {
    status_field("VmHWM:")
}

/// Starts a new peak-memory measurement: resets VmHWM to the current resident size (Linux's
/// `/proc/self/clear_refs`; without it the peak is the process's since it started).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
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
    event_model: Option<EventModel>,
    /// Rasa's message flow: `None` when not asked for, an error when it could not run.
    rasa_flow: Option<Result<RasaFlow, String>>,
}

/// What the store costs next to the raw driver, with the goal it is held to.
struct Goal {
    what: &'static str,
    /// `true`: at most `bound`; `false`: at least.
    at_most: bool,
    bound: f64,
}

const GOALS: [Goal; 5] = [
    Goal {
        what: "one-turn save p50, store / raw",
        at_most: true,
        bound: 1.3,
    },
    Goal {
        what: "latest-session read p50, store / raw",
        at_most: true,
        bound: 1.5,
    },
    Goal {
        what: "full read p50, store / raw",
        at_most: true,
        bound: 2.0,
    },
    Goal {
        what: "bulk import events/s, store / raw",
        at_most: false,
        bound: 0.5,
    },
    Goal {
        what: "saves/s at 64 conversations / at 8",
        at_most: false,
        bound: 1.0,
    },
];

impl BackendResult {
    /// The measured value of each of [`GOALS`], where measured.
    fn goal_values(&self) -> [Option<f64>; 5] {
        let latency_ratio = |store: &Latency, raw: Option<&Ratio>| {
            raw.map(|raw| store.p50_ms / raw.raw.p50_ms.max(1e-9))
        };
        let at = |concurrency| {
            self.throughput
                .iter()
                .find(|t| t.concurrency == concurrency)
                .map(|t| t.saves_per_second)
        };
        [
            self.save
                .as_ref()
                .and_then(|s| latency_ratio(&s.store, s.raw.as_ref())),
            self.read
                .as_ref()
                .and_then(|r| latency_ratio(&r.store, r.raw.as_ref())),
            self.full
                .as_ref()
                .and_then(|r| latency_ratio(&r.store, r.raw.as_ref())),
            self.bulk
                .as_ref()
                .and_then(|b| b.raw.as_ref().map(|(raw, _)| b.store / raw.max(1e-9))),
            at(64).zip(at(8)).map(|(high, low)| high / low.max(1e-9)),
        ]
    }
}

fn goal_cell(goal: &Goal, value: Option<f64>) -> String {
    match value {
        None => "-".to_owned(),
        Some(value) => {
            let met = if goal.at_most {
                value <= goal.bound
            } else {
                value >= goal.bound
            };
            format!("{value:.2} {}", if met { "met" } else { "**not met**" })
        }
    }
}

/// Why the SQL and Redis stores cost what they cost, measured by hand (round trips, plans,
/// profiles, server counters); kept with the benchmark so that a new run keeps it.
const WHERE_THE_TIME_GOES: &str = include_str!("where-the-time-goes.md");

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
    pub fn new(
        quick: bool,
        sizes: Sizes,
        results: Vec<BackendResult>,
        event_model: Option<EventModel>,
        rasa_flow: Option<Result<RasaFlow, String>>,
    ) -> Self {
        Self {
            quick,
            sizes,
            results,
            event_model,
            rasa_flow,
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
        self.goals(&mut out);
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
            "\n## 2. One-turn save next to the raw single write\n\nEvery save of section 1 \
             (the store: rendering the events, the version check and the write, committed), \
             next to the same turns written to a conversation of the same layout by the \
             driver's best single write of the same rows, rendered beforehand.\n"
        );
        let _ = writeln!(
            out,
            "| backend | store | raw write | store / raw (p50) | raw write |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        for result in &self.results {
            match &result.save {
                Some(save) => {
                    Self::ratio_row(&mut out, &result.name, &save.store, save.raw.as_ref())
                }
                None => self.skipped_row(&mut out, result, 4),
            }
        }
        let _ = writeln!(
            out,
            "\n## 3. Throughput\n\n{} saves of one turn (4 events) each, spread over 1, 8 and 64 \
             concurrent conversations.\n",
            s.throughput_saves
        );
        let _ = writeln!(
            out,
            "| backend | 1: saves/s (events/s) | 8: saves/s (events/s) | 64: saves/s (events/s) | 64 / 8 |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        for result in &self.results {
            if result.throughput.is_empty() {
                self.skipped_row(&mut out, result, 3);
                continue;
            }
            let mut cells: Vec<String> = result
                .throughput
                .iter()
                .map(|t| format!("{:.0} ({:.0})", t.saves_per_second, t.events_per_second))
                .collect();
            cells.push(
                result.goal_values()[4].map_or("-".to_owned(), |ratio| format!("{ratio:.2}")),
            );
            let _ = writeln!(out, "| {} | {} |", result.name, cells.join(" | "));
        }
        let _ = writeln!(
            out,
            "\n## 4. Latest-session read\n\nThe latest session (50 events) of a 1,000-event \
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
                    Self::ratio_row(&mut out, &result.name, &read.store, read.raw.as_ref())
                }
                None => self.skipped_row(&mut out, result, 4),
            }
        }
        let _ = writeln!(
            out,
            "\n## 5. Full read\n\nA whole conversation of {} events (turns as in section 1), \
             {} reads: the store's read (fetch and parse into events) next to the raw driver \
             fetching the same rows as text.\n",
            s.full_read_events, s.full_reads
        );
        let _ = writeln!(
            out,
            "| backend | store | raw driver | store / raw (p50) | raw query |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|");
        for result in &self.results {
            match &result.full {
                Some(read) => {
                    Self::ratio_row(&mut out, &result.name, &read.store, read.raw.as_ref())
                }
                None => self.skipped_row(&mut out, result, 4),
            }
        }
        let _ = writeln!(
            out,
            "\n## 6. Bulk import\n\n{} conversations × 20 events, copied through the store's \
             bulk path (`import_batch`, 500 conversations a call), next to the raw driver's \
             bulk path into the same layout.\n",
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
        self.memory(&mut out);
        if let Some(model) = &self.event_model {
            model.markdown(&mut out);
        }
        match &self.rasa_flow {
            Some(Ok(flow)) => flow.markdown(&mut out),
            Some(Err(why)) => {
                let _ = writeln!(
                    out,
                    "\n## 9. Rasa's message flow\n\nNot measured in this run: {why}."
                );
            }
            None => {}
        }
        let _ = writeln!(out, "\n{}", WHERE_THE_TIME_GOES.trim_end());
        let _ = writeln!(out, "\n## Backends\n");
        for result in &self.results {
            let _ = writeln!(
                out,
                "- `{}`: {}{}{}",
                result.name,
                result.label,
                if result.reduced {
                    "; measured with small sizes (50 turns, 64 saves per concurrency level, 20 reads, a 600-event full read, 50 conversations imported)"
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

    /// The goals of the store's performance, and how this run measured against them.
    fn goals(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "## Goals\n\nRatios of this run (p50 latencies; throughput in saves per second), \
             each against its goal. The raw baselines are described in the sections below; \
             `-` where a backend has no raw baseline here.\n"
        );
        let mut header = "| backend |".to_owned();
        let mut rule = "|---|".to_owned();
        for goal in &GOALS {
            let _ = write!(
                header,
                " {} ({} {}) |",
                goal.what,
                if goal.at_most { "≤" } else { "≥" },
                goal.bound
            );
            rule.push_str("---|");
        }
        let _ = writeln!(out, "{header}\n{rule}");
        for result in &self.results {
            if result.skipped.is_some() {
                self.skipped_row(out, result, GOALS.len());
                continue;
            }
            let cells: Vec<String> = GOALS
                .iter()
                .zip(result.goal_values())
                .map(|(goal, value)| goal_cell(goal, value))
                .collect();
            let _ = writeln!(out, "| {} | {} |", result.name, cells.join(" | "));
        }
        if let Some(read) = self
            .results
            .iter()
            .find(|r| r.name == "memory")
            .and_then(|r| r.read.as_ref())
        {
            let met = read.store.p50_ms <= 0.05;
            let _ = writeln!(
                out,
                "\nThe in-memory store's latest-session read of 50 events: {:.3} ms p50 (goal ≤ \
                 0.05 ms: {}).",
                read.store.p50_ms,
                if met { "met" } else { "**not met**" }
            );
        }
        let _ = writeln!(out);
    }

    /// Peak memory per scenario.
    fn memory(&self, out: &mut String) {
        let scenarios: Vec<&str> = self
            .results
            .iter()
            .find(|r| !r.peak_rss_mib.is_empty())
            .map(|r| r.peak_rss_mib.iter().map(|(s, _)| s.as_str()).collect())
            .unwrap_or_default();
        if scenarios.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "\n## 7. Peak memory\n\nPeak resident memory of the benchmark process (store, \
             driver and workload together) during each scenario, in MiB; the peak is reset to \
             the resident size before each scenario.\n"
        );
        let _ = writeln!(out, "| backend | {} |", scenarios.join(" | "));
        let _ = writeln!(out, "|---|{}", "---|".repeat(scenarios.len()));
        for result in &self.results {
            if result.peak_rss_mib.is_empty() {
                self.skipped_row(out, result, scenarios.len());
                continue;
            }
            let cells: Vec<String> = result
                .peak_rss_mib
                .iter()
                .map(|(_, peak)| peak.map_or("-".to_owned(), |mib| format!("{mib:.0}")))
                .collect();
            let _ = writeln!(out, "| {} | {} |", result.name, cells.join(" | "));
        }
    }

    /// A row of store latency, raw latency, their ratio and how the raw figure was measured.
    fn ratio_row(out: &mut String, name: &str, store: &Latency, raw: Option<&Ratio>) {
        let (raw_cell, ratio, how) = match raw {
            Some(r) => (
                ms(&r.raw),
                format!("{:.2}", store.p50_ms / r.raw.p50_ms.max(1e-9)),
                r.how.clone(),
            ),
            None => ("-".to_owned(), "-".to_owned(), "-".to_owned()),
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {raw_cell} | {ratio} | {how} |",
            ms(store)
        );
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
            "event_model": self.event_model.as_ref().map(EventModel::json),
            "rasa_flow": match &self.rasa_flow {
                Some(Ok(flow)) => flow.json(),
                Some(Err(why)) => json!({"skipped": why}),
                None => Value::Null,
            },
            "sizes": {
                "turns": self.sizes.turns,
                "throughput_saves": self.sizes.throughput_saves,
                "reads": self.sizes.reads,
                "bulk_conversations": self.sizes.bulk_conversations,
                "full_read_events": self.sizes.full_read_events,
                "full_reads": self.sizes.full_reads,
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
                "one_turn_save": r.save.as_ref().map(|save| json!({
                    "store": latency(&save.store),
                    "raw": save.raw.as_ref().map(|raw| json!({"latency": latency(&raw.raw), "how": raw.how})),
                })),
                "latest_session_read": r.read.as_ref().map(|read| json!({
                    "store": latency(&read.store),
                    "raw": read.raw.as_ref().map(|raw| json!({"latency": latency(&raw.raw), "how": raw.how})),
                })),
                "full_read": r.full.as_ref().map(|read| json!({
                    "store": latency(&read.store),
                    "raw": read.raw.as_ref().map(|raw| json!({"latency": latency(&raw.raw), "how": raw.how})),
                })),
                "peak_rss_mib": r.peak_rss_mib.iter().map(|(scenario, peak)| json!({
                    "scenario": scenario, "mib": peak,
                })).collect::<Vec<_>>(),
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
