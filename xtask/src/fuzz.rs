//! `cargo xtask fuzz`: every cargo-fuzz target in `fuzz/`, for a fixed time each, on stable.
//!
//! Targets are the `[[bin]]` targets of `fuzz/Cargo.toml` (read with `cargo metadata`), so a
//! new `fuzz_targets/*.rs` with its `[[bin]]` entry is picked up without touching the xtask.
//! Each runs as `cargo fuzz run -s none TARGET fuzz/corpus/TARGET -- -max_total_time=SECS`;
//! a crash, a leak or a slow unit fails the run and names the artifact libFuzzer wrote.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{cmd, install, metadata};

/// Seconds per target for `--smoke` (and in `ci`).
pub(crate) const SMOKE_SECS: u64 = 20;
/// Seconds per target by default.
pub(crate) const DEFAULT_SECS: u64 = 60;
/// libFuzzer's per-input time limit: an input that runs longer is reported as a hang.
const UNIT_TIMEOUT_SECS: u64 = 10;

/// What to fuzz and for how long.
pub(crate) struct Config {
    /// One target, or all when `None`.
    pub(crate) target: Option<String>,
    /// Seconds per target.
    pub(crate) secs: u64,
    /// Whether a missing C++ compiler (libFuzzer is C++) may be installed with apt.
    pub(crate) use_apt: bool,
}

/// The outcome of one target's run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TargetReport {
    /// The target name.
    pub(crate) name: String,
    /// Inputs executed, from libFuzzer's final stats.
    pub(crate) execs: Option<u64>,
    /// Wall time of the run.
    pub(crate) elapsed: Duration,
}

/// Builds and runs the fuzz targets; fails on the first target that finds a problem.
pub(crate) fn run(config: &Config) -> Result<Vec<TargetReport>> {
    let root = crate::workspace_root()?;
    let fuzz_dir = root.join("fuzz");
    let all = targets(&fuzz_dir.join("Cargo.toml"))?;
    let selected = match &config.target {
        None => all,
        Some(name) if all.contains(name) => vec![name.clone()],
        Some(name) => bail!(
            "no fuzz target `{name}` in fuzz/Cargo.toml; known targets: {}",
            all.join(", ")
        ),
    };
    if selected.is_empty() {
        bail!("fuzz/Cargo.toml declares no [[bin]] targets");
    }
    if cmd::find_on_path("c++").is_none() && config.use_apt {
        install::ensure_apt(&["g++"])?;
    }
    let path = cmd::path_with(&cargo_fuzz_bin_dir()?)?;

    let mut build = cmd::cargo();
    build
        .args(["fuzz", "build", "-s", "none"])
        .args(config.target.as_deref())
        .current_dir(&root)
        .env("PATH", &path);
    cmd::run(&mut build)?;

    let mut reports = Vec::new();
    for name in &selected {
        let corpus = fuzz_dir.join("corpus").join(name);
        install::create_dir(&corpus)?;
        let mut command = cmd::cargo();
        command
            .args(["fuzz", "run", "-s", "none", name])
            .arg(&corpus)
            .arg("--")
            .arg(format!("-max_total_time={}", config.secs))
            .arg(format!("-timeout={UNIT_TIMEOUT_SECS}"))
            .arg("-print_final_stats=1")
            .current_dir(&root)
            .env("PATH", &path);
        let report = run_target(name, &mut command)?;
        match report.execs {
            Some(execs) => eprintln!(
                "xtask: fuzz target {name}: {execs} execs in {:.1} s",
                report.elapsed.as_secs_f64()
            ),
            None => eprintln!("xtask: fuzz target {name}: exec count not reported"),
        }
        reports.push(report);
    }
    eprintln!("xtask: fuzz summary ({} s per target):", config.secs);
    for report in &reports {
        let execs = report
            .execs
            .map_or_else(|| "?".to_owned(), |n| n.to_string());
        eprintln!("  {:<24} {execs:>12} execs", report.name);
    }
    Ok(reports)
}

/// The `[[bin]]` target names of the fuzz crate, sorted.
fn targets(manifest: &Path) -> Result<Vec<String>> {
    let packages = metadata::packages(manifest)?;
    let mut names: Vec<String> = packages
        .iter()
        .flat_map(|p| &p.targets)
        .filter(|t| t.is("bin"))
        .map(|t| t.name.clone())
        .collect();
    names.sort();
    Ok(names)
}

/// The directory holding `cargo-fuzz`: from `PATH`, else the cache (installing it there).
fn cargo_fuzz_bin_dir() -> Result<PathBuf> {
    if let Some(found) = cmd::find_on_path("cargo-fuzz") {
        return found
            .parent()
            .map(Path::to_path_buf)
            .context("cargo-fuzz has no parent directory");
    }
    let root = install::cache_dir()?.join("cargo-fuzz");
    let binary = install::cargo_install(&install::CargoInstall {
        spec: "cargo-fuzz",
        extra_args: &[],
        root: root.clone(),
        binary: "cargo-fuzz",
        lock_name: "cargo-fuzz.install",
    })?;
    binary
        .parent()
        .map(Path::to_path_buf)
        .context("cargo-fuzz has no parent directory")
}

/// Runs one `cargo fuzz run`, echoing its standard error while reading libFuzzer's final
/// stats and artifact path from it.
fn run_target(name: &str, command: &mut Command) -> Result<TargetReport> {
    let line = cmd::display(command);
    eprintln!("$ {line}");
    let started = Instant::now();
    let mut child = command
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let mut summary = Summary::default();
    for text in BufReader::new(stderr).lines() {
        let text = text.context("cannot read cargo fuzz output")?;
        eprintln!("{text}");
        summary.observe(&text);
    }
    let status = child
        .wait()
        .with_context(|| format!("cannot wait for `{line}`"))?;
    let elapsed = started.elapsed();
    if !status.success() {
        let artifact = summary
            .artifact
            .as_deref()
            .map_or_else(String::new, |path| format!("; input written to {path}"));
        bail!("fuzz target {name} failed ({status}){artifact}");
    }
    Ok(TargetReport {
        name: name.to_owned(),
        execs: summary.execs,
        elapsed,
    })
}

/// What the xtask reads from libFuzzer's output.
#[derive(Debug, Default, PartialEq, Eq)]
struct Summary {
    execs: Option<u64>,
    artifact: Option<String>,
}

impl Summary {
    /// Takes what it needs from one line of libFuzzer output.
    fn observe(&mut self, line: &str) {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("stat::number_of_executed_units:") {
            if let Ok(n) = rest.trim().parse() {
                self.execs = Some(n);
            }
        } else if let Some(rest) = line.strip_prefix("Done ") {
            // "Done 12345 runs in 20 second(s)"; the final stats line wins when present.
            if self.execs.is_none()
                && let Some(n) = rest.split_whitespace().next().and_then(|n| n.parse().ok())
            {
                self.execs = Some(n);
            }
        } else if let Some((_, path)) = line.split_once("Test unit written to ") {
            self.artifact = Some(path.trim().to_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summarise(text: &str) -> Summary {
        let mut summary = Summary::default();
        for line in text.lines() {
            summary.observe(line);
        }
        summary
    }

    #[test]
    fn reads_the_final_exec_count() {
        let summary = summarise(
            "#1048576\tpulse  cov: 120 ft: 300 corp: 40/1Kb exec/s: 52428 rss: 60Mb\n\
             Done 1234567 runs in 21 second(s)\n\
             stat::number_of_executed_units: 1234568\n\
             stat::average_exec_per_sec:     58789\n",
        );
        assert_eq!(summary.execs, Some(1_234_568));
        assert_eq!(summary.artifact, None);
    }

    #[test]
    fn falls_back_to_the_done_line() {
        assert_eq!(summarise("Done 99 runs in 1 second(s)\n").execs, Some(99));
    }

    #[test]
    fn reads_the_artifact_path() {
        let summary = summarise(
            "==1== ERROR: libFuzzer: deadly signal\n\
             artifact_prefix='/w/fuzz/artifacts/name_parse/'; Test unit written to /w/fuzz/artifacts/name_parse/crash-da39a3ee\n\
             Base64: \n",
        );
        assert_eq!(
            summary.artifact.as_deref(),
            Some("/w/fuzz/artifacts/name_parse/crash-da39a3ee")
        );
    }

    #[test]
    fn lists_the_fuzz_crate_targets() -> Result<()> {
        let root = crate::workspace_root()?;
        let names = targets(&root.join("fuzz").join("Cargo.toml"))?;
        assert!(names.iter().any(|n| n == "name_parse"), "{names:?}");
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
        Ok(())
    }
}
