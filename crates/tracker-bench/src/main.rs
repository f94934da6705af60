//! `tracker-bench`: measures every backend against the local test services and writes
//! `docs/benchmarks.md` and `docs/benchmarks.json`. Run it through `cargo xtask bench`, which
//! starts the services and builds in release mode.
//!
//! Scenarios, per backend:
//! 1. save cost as one conversation grows turn by turn (p50/p99 of early and late turns), and
//!    every one-turn save next to the raw driver's best single write of the same rows;
//! 2. throughput with 1, 8 and 64 concurrent conversations;
//! 3. latest-session read of a 50-event session in a 1,000-event conversation, and a full
//!    read of a 6,000-event conversation, next to the raw driver's best query;
//! 4. bulk import, next to the raw driver's fastest bulk path;
//!
//! and the peak memory of the process during each; then the event model alone (CPU
//! instructions per saved and per read event, see [`event_model`]), and Rasa's message flow
//! with Rasa's own stores and with the Python package (see [`rasa_flow`]; `--only` runs it
//! when the list names `rasa`).

mod backends;
mod event_model;
mod rasa_flow;
mod report;
mod scenarios;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

/// Sizes of a run.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Turns of the growing conversation (scenario 1).
    pub turns: usize,
    /// Saves per concurrency level (scenario 2).
    pub throughput_saves: usize,
    /// Reads measured (scenario 3).
    pub reads: usize,
    /// Conversations imported (scenario 4), 20 events each.
    pub bulk_conversations: usize,
    /// Events of the conversation read whole (scenario 3).
    pub full_read_events: usize,
    /// Full reads measured (scenario 3).
    pub full_reads: usize,
}

impl Sizes {
    const FULL: Self = Self {
        turns: 1_000,
        throughput_saves: 2_000,
        reads: 300,
        bulk_conversations: 10_000,
        full_read_events: 6_000,
        full_reads: 50,
    };
    const QUICK: Self = Self {
        turns: 100,
        throughput_saves: 200,
        reads: 50,
        bulk_conversations: 300,
        full_read_events: 6_000,
        full_reads: 10,
    };
    /// Local stand-ins of services that can't run here (moto copies a whole table on every
    /// transaction): enough to see that the store works on them, not to rate them.
    const STAND_IN: Self = Self {
        turns: 50,
        throughput_saves: 64,
        reads: 20,
        bulk_conversations: 50,
        full_read_events: 600,
        full_reads: 5,
    };
}

struct Args {
    quick: bool,
    only: Option<Vec<String>>,
    markdown: PathBuf,
    json: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        quick: false,
        only: None,
        markdown: PathBuf::from("docs/benchmarks.md"),
        json: PathBuf::from("docs/benchmarks.json"),
    };
    let mut iter = std::env::args().skip(1);
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--only" => {
                let list = iter.next().ok_or("--only needs a list of backends")?;
                args.only = Some(list.split(',').map(str::to_owned).collect());
            }
            "--markdown" => {
                args.markdown = iter.next().ok_or("--markdown needs a path")?.into();
            }
            "--json" => args.json = iter.next().ok_or("--json needs a path")?.into(),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    if event_model::run_phase_from_args() {
        return ExitCode::SUCCESS;
    }
    let args = match parse_args() {
        Ok(args) => args,
        Err(error) => {
            eprintln!(
                "error: {error}\nusage: tracker-bench [--quick] [--only memory,sqlite,...,rasa] [--markdown FILE] [--json FILE]"
            );
            return ExitCode::from(2);
        }
    };
    let sizes = if args.quick {
        Sizes::QUICK
    } else {
        Sizes::FULL
    };
    let mut results = Vec::new();
    for backend in backends::all() {
        if let Some(only) = &args.only
            && !only.iter().any(|name| name == backend.name)
        {
            continue;
        }
        eprintln!("== {} ({})", backend.name, backend.label);
        let reduced = backend.stand_in;
        let sizes = if reduced { Sizes::STAND_IN } else { sizes };
        match scenarios::run(&backend, sizes).await {
            Ok(mut result) => {
                result.reduced = reduced;
                results.push(result);
            }
            Err(error) => {
                eprintln!("   skipped: {error}");
                results.push(report::BackendResult::skipped(&backend, error.to_string()));
            }
        }
    }
    eprintln!("== event model");
    let event_model = match event_model::measure() {
        Ok(model) => Some(model),
        Err(error) => {
            eprintln!("   skipped: {error}");
            None
        }
    };
    let rasa_flow = if args
        .only
        .as_ref()
        .is_none_or(|only| only.iter().any(|name| name == "rasa"))
    {
        eprintln!("== Rasa's message flow");
        let flow = rasa_flow::measure(if args.quick { 1 } else { 3 });
        if let Err(error) = &flow {
            eprintln!("   skipped: {error}");
        }
        Some(flow)
    } else {
        None
    };
    let run = report::Run::new(args.quick, sizes, results, event_model, rasa_flow);
    if let Err(error) = run.write(&args.markdown, &args.json) {
        eprintln!("error: writing the report: {error}");
        return ExitCode::FAILURE;
    }
    eprintln!(
        "wrote {} and {}",
        args.markdown.display(),
        args.json.display()
    );
    ExitCode::SUCCESS
}
