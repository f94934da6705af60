//! Development tasks for tracker-store: `cargo xtask <task>`.
//!
//! | task | what it does |
//! |---|---|
//! | `ci` | `cargo fmt --check`, `cargo clippy -D warnings`, `cargo test --workspace` — the first checks `.ci/run` runs (it then runs the tests again without the service variables, and `standalone`) |
//! | `lint` | format check and clippy only |
//! | `test` | `cargo test --workspace` |
//! | `doc` | `cargo doc --workspace --no-deps` with warnings as errors |
//! | `bench [--quick] [--only a,b]` | starts the local services (`.ci/services.sh`), builds `tracker-bench` in release mode and writes `docs/benchmarks.md` and `docs/benchmarks.json`; `--only` names backends, and `rasa` for Rasa's message flow (which builds and installs the Python package's release wheel into the Rasa virtualenv) |
//! | `standalone [--dir DIR] [CRATE ...]` | each publishable crate on its own, as a user gets it: a copy of the workspace with freshly resolved newest dependencies, `cargo clippy -p <crate> --all-targets` and `cargo build -p <crate>` with warnings denied (see `standalone.rs`) |
//!
//! Plain `cargo test --workspace` works without this tool.

mod standalone;

use std::process::{Command, ExitCode};

const USAGE: &str = "usage: cargo xtask <ci|lint|test|doc|bench [--quick] [--only a,b]|standalone [--dir DIR] [CRATE ...]>";

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    match task.as_deref() {
        Some("bench") => return bench(std::env::args().skip(2).collect()),
        Some("standalone") => return standalone::run(std::env::args().skip(2).collect()),
        _ => {}
    }
    let steps: &[&[&str]] = match task.as_deref() {
        Some("ci") => &[FMT, CLIPPY, TEST],
        Some("lint") => &[FMT, CLIPPY],
        Some("test") => &[TEST],
        Some("doc") => &[DOC],
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    for step in steps {
        if !run(step) {
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

const FMT: &[&str] = &["fmt", "--all", "--", "--check"];
const CLIPPY: &[&str] = &[
    "clippy",
    "--workspace",
    "--all-targets",
    "--",
    "-D",
    "warnings",
];
const TEST: &[&str] = &["test", "--workspace"];
const DOC: &[&str] = &["doc", "--workspace", "--no-deps"];

fn run(args: &[&str]) -> bool {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    eprintln!("xtask: cargo {}", args.join(" "));
    let mut command = Command::new(cargo);
    command.args(args);
    if args[0] == "doc" {
        command.env("RUSTDOCFLAGS", "-D warnings");
    }
    match command.status() {
        Ok(status) if status.success() => true,
        Ok(status) => {
            eprintln!("xtask: cargo {} failed: {status}", args[0]);
            false
        }
        Err(error) => {
            eprintln!("xtask: could not run cargo: {error}");
            false
        }
    }
}

/// Starts the services the benchmark measures, then runs it in release mode.
fn bench(args: Vec<String>) -> ExitCode {
    let script = "source .ci/services.sh && start_services >&2 && \
                  cargo run --release --package tracker-bench -- \"$@\"";
    eprintln!(
        "xtask: starting services and running tracker-bench {}",
        args.join(" ")
    );
    let status = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("bench")
        .args(&args)
        .status();
    match status {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("xtask: the benchmark failed: {status}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("xtask: could not run bash: {error}");
            ExitCode::FAILURE
        }
    }
}
