//! Rasa's message-processor flow (`get_or_create_tracker` → `update` → `save`, and
//! `retrieve`) with Rasa 3.6.21's own tracker stores and with this project's Python package
//! (`crates/tracker-py`), same backend, same run: `crates/tracker-py/bench/bench_rasa_flow.py`
//! run in the Rasa virtualenv with a release build of the wheel installed from its file.
//!
//! The virtualenv is `RASA_VENV` (default `/var/tmp/rasa-3.6.21`, which
//! `crates/tracker-py/run-tests.sh` creates); without it the section says why it is missing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The script, from the workspace root.
const SCRIPT: &str = "crates/tracker-py/bench/bench_rasa_flow.py";
/// The Python package's crate.
const MANIFEST: &str = "crates/tracker-py/Cargo.toml";

/// One measure of the flow and its goal: the speed-up over Rasa's store it should reach,
/// per backend.
struct Measure {
    key: &'static str,
    what: &'static str,
    goal: fn(&str) -> Option<f64>,
}

const MEASURES: [Measure; 5] = [
    Measure {
        key: "save_p50_ms_turns_1_10",
        what: "save, turns 1–10",
        goal: |_| None,
    },
    Measure {
        key: "save_p50_ms_turns_991_1000",
        what: "save, turns 991–1000",
        goal: |backend| Some(if backend == "redis" { 100.0 } else { 10.0 }),
    },
    Measure {
        key: "save_p50_ms_turns_1001_1030_same_tracker",
        what: "save, turns 1001–1030, one kept tracker",
        goal: |_| None,
    },
    Measure {
        key: "save_p50_ms_turns_1031_1050_after_100ms_idle",
        what: "save, turns 1031–1050, one kept tracker, each after 100 ms idle",
        goal: |_| None,
    },
    Measure {
        key: "retrieve_p50_ms_6000_events",
        what: "`retrieve` of the 6,003-event session",
        goal: |_| Some(5.0),
    },
];

/// The flow's results, one object per backend as the script writes them.
#[derive(Debug, Clone)]
pub struct RasaFlow {
    pub results: Vec<Value>,
    pub conversations: usize,
}

/// Builds the release wheel, installs it into the Rasa virtualenv and runs the script on
/// PostgreSQL, SQLite and Redis (`conversations` conversations each).
pub fn measure(conversations: usize) -> Result<RasaFlow, String> {
    if !Path::new(SCRIPT).exists() {
        return Err(format!("{SCRIPT} not found: run from the workspace root"));
    }
    let venv = std::env::var_os("RASA_VENV")
        .map_or_else(|| PathBuf::from("/var/tmp/rasa-3.6.21"), PathBuf::from);
    let python = venv.join("bin/python");
    if !python.exists() {
        return Err(format!(
            "no Rasa 3.6.21 virtualenv at {} (set RASA_VENV; crates/tracker-py/run-tests.sh \
             creates it)",
            venv.display()
        ));
    }
    run(
        Command::new(&python).args(["-c", "import rasa, maturin"]),
        "the virtualenv has Rasa and maturin",
    )?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| PathBuf::from("target"), PathBuf::from);
    let wheels = target.join("tracker-py-bench-wheels");
    let _ = std::fs::remove_dir_all(&wheels);
    eprintln!("   building the release wheel");
    run(
        Command::new(venv.join("bin/maturin"))
            .args(["build", "--quiet", "--release", "--manifest-path", MANIFEST])
            .arg("--interpreter")
            .arg(&python)
            .arg("--out")
            .arg(&wheels)
            .env("PYO3_PYTHON", &python),
        "maturin build --release",
    )?;
    let wheel = std::fs::read_dir(&wheels)
        .map_err(|e| format!("reading {}: {e}", wheels.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .find(|path| path.extension().is_some_and(|ext| ext == "whl"))
        .ok_or_else(|| format!("maturin left no wheel in {}", wheels.display()))?;
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--force-reinstall",
                "--no-deps",
            ])
            .arg(&wheel),
        "pip install of the wheel",
    )?;
    let output = target.join("tracker-py-bench.json");
    eprintln!("   running {SCRIPT}");
    run(
        Command::new(&python)
            .arg(SCRIPT)
            .args([
                "--backends",
                "postgres,sqlite,redis",
                "--conversations",
                &conversations.to_string(),
            ])
            .arg("--json")
            .arg(&output),
        SCRIPT,
    )?;
    let text = std::fs::read_to_string(&output)
        .map_err(|e| format!("reading {}: {e}", output.display()))?;
    let results: Vec<Value> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", output.display()))?;
    Ok(RasaFlow {
        results,
        conversations,
    })
}

/// Runs `command`, its output going to this process's stderr; `what` names it in errors.
fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let status = command
        .stdout(std::process::Stdio::inherit())
        .status()
        .map_err(|e| format!("{what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

fn number(value: &Value, path: &[&str]) -> Option<f64> {
    path.iter()
        .try_fold(value, |value, key| value.get(key))
        .and_then(Value::as_f64)
}

impl RasaFlow {
    /// The report's section.
    pub fn markdown(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\n## 9. Rasa's message flow\n\n`{SCRIPT}` drives Rasa 3.6.21's message-processor \
             flow — `get_or_create_tracker`, `update` with the 6 events of one message, \
             `save` — with Rasa's own tracker store and with this project's \
             (`tracker_store.RasaTrackerStore`, release wheel), same backend, same run, turns \
             alternating between the two; {} conversation(s) per backend. Then 15 \
             `retrieve`s of the 6,003-event session, alternating likewise, each after a \
             `gc.collect()` (as `timeit` runs; the cost of a full collection is below). p50 in \
             milliseconds; the speed-up is Rasa's / this one's.\n",
            self.conversations
        );
        let _ = writeln!(
            out,
            "| backend | measure | Rasa's store | `RasaTrackerStore` | speed-up | goal |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---|");
        for result in &self.results {
            let backend = result.get("backend").and_then(Value::as_str).unwrap_or("?");
            for measure in &MEASURES {
                let rasa = number(result, &["rasa", measure.key]);
                let ours = number(result, &["ours", measure.key]);
                let speedup = rasa.zip(ours).map(|(rasa, ours)| rasa / ours.max(1e-9));
                let cell = |value: Option<f64>| value.map_or("-".to_owned(), |v| format!("{v:.2}"));
                let goal = match ((measure.goal)(backend), speedup) {
                    (Some(goal), Some(speedup)) => format!(
                        "≥ {goal:.0}×: {}",
                        if speedup >= goal {
                            "met"
                        } else {
                            "**not met**"
                        }
                    ),
                    _ => String::new(),
                };
                let _ = writeln!(
                    out,
                    "| {backend} | {} | {} | {} | {} | {goal} |",
                    measure.what,
                    cell(rasa),
                    cell(ours),
                    speedup.map_or("-".to_owned(), |s| format!("{s:.1}×")),
                );
            }
        }
        let _ = writeln!(
            out,
            "\nWhere this package's `retrieve` of that session spends its time (best of 3, ms): \
             the native read (query, checks, the events' JSON text), `json.loads`, the Python \
             event objects (`deserialise_events`) and the replay (`from_events`); last, Rasa's \
             own `DialogueStateTracker.from_dict` of the same events, which Rasa's stores use \
             in place of the last two.\n"
        );
        let _ = writeln!(
            out,
            "| backend | events | native read | `json.loads` | event objects | replay | Rasa's `from_dict` |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
        for result in &self.results {
            let backend = result.get("backend").and_then(Value::as_str).unwrap_or("?");
            let part = |key: &str, digits: usize| {
                number(result, &["ours_retrieve_breakdown", key])
                    .map_or("-".to_owned(), |v| format!("{v:.digits$}"))
            };
            let _ = writeln!(
                out,
                "| {backend} | {} | {} | {} | {} | {} | {} |",
                part("events", 0),
                part("native_read_ms", 1),
                part("json_loads_ms", 1),
                part("deserialise_ms", 1),
                part("replay_ms", 1),
                part("rasa_from_dict_ms", 1),
            );
        }
        for result in &self.results {
            if let (Some(ms), Some(objects)) = (
                number(result, &["gc_full_collection_ms"]),
                number(result, &["gc_tracked_objects"]),
            ) {
                let backend = result.get("backend").and_then(Value::as_str).unwrap_or("?");
                let _ = writeln!(
                    out,
                    "\nA full garbage collection in the {backend} run's process ({objects:.0} \
                     objects tracked, Rasa loaded): {ms:.0} ms."
                );
            }
        }
        let _ = writeln!(out, "\n{}", WHERE_THE_TIME_GOES.trim_end());
    }

    /// The results as the script wrote them.
    pub fn json(&self) -> Value {
        Value::Array(self.results.clone())
    }
}

/// Why the flow costs what it costs, measured by hand; kept with the benchmark.
const WHERE_THE_TIME_GOES: &str = include_str!("rasa-flow-time.md");
