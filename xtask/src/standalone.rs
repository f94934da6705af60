//! `cargo xtask standalone`: every publishable crate, on its own, with the newest compatible
//! dependencies, builds and passes clippy with warnings denied.
//!
//! The workspace's files (as git lists them: tracked and untracked-but-not-ignored) are
//! copied into a scratch workspace, `cargo update` resolves every dependency afresh to its
//! newest semver-compatible version (ignoring `rust-version`, as for a user on a current
//! toolchain), and then, for each crate with `publish` not `false`, one at a time:
//! `cargo clippy -p <crate> --all-targets` and `cargo build -p <crate>`, with its default
//! features and, when it has others, again with `--all-features`. `RUSTFLAGS=-Dwarnings`
//! denies warnings in the workspace's crates; cargo caps lints of registry dependencies, so
//! their warnings neither show nor fail. Building one crate with `-p` enables only the
//! features that crate asks for, where the workspace-wide CI build unifies the features of
//! every member.
//!
//! The scratch directory (default `/var/tmp/tracker-store-standalone`, or `--dir`) keeps its
//! copy and its own target directory between runs, so later runs only rebuild what changed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use serde_json::Value;

const DEFAULT_DIR: &str = "/var/tmp/tracker-store-standalone";

const USAGE: &str = "usage: cargo xtask standalone [--dir DIR] [CRATE ...]";

/// A publishable workspace crate.
struct Crate {
    name: String,
    /// Whether it declares features its default features leave off.
    has_features: bool,
    /// The workspace crates it depends on (normal and build dependencies).
    needs: Vec<String>,
}

/// Runs the task with its arguments (after `standalone`).
pub fn run(args: Vec<String>) -> ExitCode {
    let mut dir = PathBuf::from(DEFAULT_DIR);
    let mut only = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => match args.next() {
                Some(value) => dir = PathBuf::from(value),
                None => return usage("--dir needs a directory"),
            },
            flag if flag.starts_with('-') => return usage(&format!("unknown option {flag}")),
            name => only.push(name.to_owned()),
        }
    }
    match standalone(&dir, &only) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("xtask standalone: {error}");
            ExitCode::FAILURE
        }
    }
}

fn usage(error: &str) -> ExitCode {
    eprintln!("xtask standalone: {error}\n{USAGE}");
    ExitCode::from(2)
}

/// Returns whether every check passed.
fn standalone(dir: &Path, only: &[String]) -> Result<bool, String> {
    let started = Instant::now();
    let root = workspace_root();
    let crates = publishable(&root)?;
    let unknown: Vec<&String> = only
        .iter()
        .filter(|name| !crates.iter().any(|c| &c.name == *name))
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = crates.iter().map(|c| c.name.as_str()).collect();
        return Err(format!(
            "not a publishable crate of the workspace: {unknown:?} (publishable: {})",
            known.join(", ")
        ));
    }
    let copy = dir.join("workspace");
    let target = dir.join("target");
    let changed = sync(&root, &copy)?;
    eprintln!(
        "xtask standalone: the copy of {} in {} is up to date ({changed} files written or \
         removed); target directory {}",
        root.display(),
        copy.display(),
        target.display()
    );

    let cargo = || {
        let mut command = Command::new(cargo_path());
        command
            .current_dir(&copy)
            .env("CARGO_TARGET_DIR", &target)
            .env("CARGO_INCREMENTAL", "0")
            .env("RUSTFLAGS", "-Dwarnings")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .env_remove("CARGO_BUILD_RUSTFLAGS")
            .env("CARGO_RESOLVER_INCOMPATIBLE_RUST_VERSIONS", "allow");
        command
    };
    if !step("cargo update", cargo().arg("update")) {
        return Err("cargo update failed".to_owned());
    }

    let mut failed = Vec::new();
    for krate in crates
        .iter()
        .filter(|c| only.is_empty() || only.contains(&c.name))
    {
        let mut feature_sets = vec![("default features", None)];
        if krate.has_features {
            feature_sets.push(("all features", Some("--all-features")));
        }
        for (label, flag) in feature_sets {
            for (what, args) in [
                ("clippy", &["clippy", "--all-targets"][..]),
                ("build", &["build"][..]),
            ] {
                let name = format!("{what} -p {} ({label})", krate.name);
                let mut command = cargo();
                command.args(args).args(["-p", &krate.name]).args(flag);
                if !step(&name, &mut command) {
                    failed.push(name);
                }
            }
        }
    }
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    if failed.is_empty() {
        eprintln!(
            "xtask standalone: every publishable crate is clean on its own ({minutes:.1} min)"
        );
        Ok(true)
    } else {
        eprintln!(
            "xtask standalone: {} failed ({minutes:.1} min):\n  {}",
            failed.len(),
            failed.join("\n  ")
        );
        Ok(false)
    }
}

/// Runs one command, reporting its outcome and duration.
fn step(name: &str, command: &mut Command) -> bool {
    eprintln!("xtask standalone: {name}");
    let started = Instant::now();
    let ok = match command.status() {
        Ok(status) => status.success(),
        Err(error) => {
            eprintln!("xtask standalone: cannot run cargo: {error}");
            false
        }
    };
    eprintln!(
        "xtask standalone: {name}: {} in {:.1} s",
        if ok { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    ok
}

fn cargo_path() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned())
}

/// The workspace this xtask belongs to.
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The workspace members whose `publish` is not `false`, each after the crates it depends on
/// (then by name), so that a broken crate fails first on its own.
fn publishable(root: &Path) -> Result<Vec<Crate>, String> {
    let output = Command::new(cargo_path())
        .current_dir(root)
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let metadata: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| format!("cannot read cargo metadata's output: {e}"))?;
    let packages = metadata["packages"]
        .as_array()
        .ok_or("cargo metadata lists no packages")?;
    let mut crates = Vec::new();
    for package in packages {
        // `publish`: null means anywhere, a list names the registries; `false` is `[]`.
        if package["publish"]
            .as_array()
            .is_some_and(|registries| registries.is_empty())
        {
            continue;
        }
        let name = package["name"]
            .as_str()
            .ok_or("a package without a name")?
            .to_owned();
        // Features that `--all-features` adds to the default ones.
        let features = package["features"].as_object();
        let default: Vec<&str> = features
            .and_then(|features| features.get("default"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let has_features = features.is_some_and(|features| {
            features
                .keys()
                .any(|feature| feature != "default" && !default.contains(&feature.as_str()))
        });
        let needs = package["dependencies"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|dep| dep["path"].is_string() && dep["kind"].as_str() != Some("dev"))
            .filter_map(|dep| dep["name"].as_str().map(str::to_owned))
            .collect();
        crates.push(Crate {
            name,
            has_features,
            needs,
        });
    }
    crates.sort_by(|a, b| a.name.cmp(&b.name));
    let mut ordered: Vec<Crate> = Vec::with_capacity(crates.len());
    while !crates.is_empty() {
        // The first crate none of whose dependencies is still waiting (a cycle: the first).
        let waiting = |name: &String| crates.iter().any(|c| &c.name == name);
        let ready = crates
            .iter()
            .position(|c| !c.needs.iter().any(waiting))
            .unwrap_or(0);
        ordered.push(crates.remove(ready));
    }
    Ok(ordered)
}

/// Makes `copy` hold exactly the files git lists in `root` (tracked, and untracked but not
/// ignored), writing only those whose content differs so that cargo's fingerprints of
/// unchanged files stay valid. Returns how many files were written or removed.
fn sync(root: &Path, copy: &Path) -> Result<usize, String> {
    let output = Command::new("git")
        .current_dir(root)
        .args([
            "ls-files",
            "-z",
            "--cached",
            "--others",
            "--exclude-standard",
        ])
        .output()
        .map_err(|e| format!("cannot run git ls-files: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "git ls-files failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let listed: BTreeSet<PathBuf> = output
        .stdout
        .split(|&b| b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| PathBuf::from(String::from_utf8_lossy(name).into_owned()))
        // A tracked file deleted from the work tree is gone for a user too; build output of
        // a project kept outside the workspace (its own `target/`) is not a source.
        .filter(|name| root.join(name).is_file())
        .filter(|name| !name.components().any(|part| part.as_os_str() == "target"))
        .collect();
    let mut changed = 0;
    for name in &listed {
        let (from, to) = (root.join(name), copy.join(name));
        let content = std::fs::read(&from).map_err(|e| format!("{}: {e}", from.display()))?;
        if std::fs::read(&to).is_ok_and(|old| old == content) {
            continue;
        }
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&to, content).map_err(|e| format!("{}: {e}", to.display()))?;
        changed += 1;
    }
    let mut present = Vec::new();
    files_under(copy, Path::new(""), &mut present)?;
    for name in present {
        if !listed.contains(&name) {
            let path = copy.join(&name);
            std::fs::remove_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// Every file under `dir`, as paths relative to the copy's root.
fn files_under(base: &Path, relative: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
    let dir = base.join(relative);
    let entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
        let name = relative.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| format!("{}: {e}", name.display()))?;
        if kind.is_dir() {
            files_under(base, &name, out)?;
        } else {
            out.push(name);
        }
    }
    Ok(())
}
