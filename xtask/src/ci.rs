//! `cargo xtask ci`: everything CI checks, in order, stopping at the first failed step, with
//! a timing summary at the end whatever happened. Once the tests pass, the summary also counts
//! the behaviour matrix's cases per backend (`store_behavior` and `service_matrix` run each
//! case as `<backend>::<case>`) and names any case a backend lacks.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::{azure, cmd, fuzz, gcs, install, metadata, proptest, s3, server};

/// Cases per property in the `proptest` step (about a minute on 2 cores).
pub(crate) const DEFAULT_PROPTEST_CASES: u32 = 2000;

/// The Debian packages a package feature named `libopus` needs.
const LIBOPUS_PACKAGES: &[&str] = &["libopus-dev", "pkg-config"];

/// Options of `cargo xtask ci`.
pub(crate) struct Config {
    /// Skip the fuzz smoke run (local iteration only).
    pub(crate) skip_fuzz: bool,
    /// Skip the S3 server; S3 tests then skip themselves (local iteration only).
    pub(crate) skip_s3: bool,
    /// Skip the GCS server; GCS tests then skip themselves (local iteration only).
    pub(crate) skip_gcs: bool,
    /// Skip the Azure Blob server; Azure Blob tests then skip themselves (local iteration
    /// only).
    pub(crate) skip_azure: bool,
    /// Whether missing Debian packages may be installed with apt-get.
    pub(crate) use_apt: bool,
    /// `PROPTEST_CASES` for the proptest step.
    pub(crate) proptest_cases: u32,
}

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Ok,
    Failed,
    Skipped,
}

/// The steps run so far, with their outcome and duration, and lines for the summary.
#[derive(Debug, Default)]
struct Steps {
    done: Vec<(String, Outcome, Duration)>,
    notes: Vec<String>,
}

impl Steps {
    /// Runs the step `name`, recording its time; a failure names the step.
    fn run<T>(&mut self, name: &str, step: impl FnOnce() -> Result<T>) -> Result<T> {
        eprintln!("\n==> ci step: {name}");
        let started = Instant::now();
        let result = step();
        let elapsed = started.elapsed();
        let outcome = if result.is_ok() {
            Outcome::Ok
        } else {
            Outcome::Failed
        };
        self.done.push((name.to_owned(), outcome, elapsed));
        result.with_context(|| format!("ci step `{name}` failed"))
    }

    /// Records that the step `name` was skipped, and why.
    fn skip(&mut self, name: &str, why: &str) {
        eprintln!("\n==> ci step: {name}: skipped ({why})");
        self.done
            .push((name.to_owned(), Outcome::Skipped, Duration::ZERO));
    }

    /// Adds a line to the end of the summary.
    fn note(&mut self, line: String) {
        self.notes.push(line);
    }

    /// The timing table printed at the end, then the notes.
    fn summary(&self) -> String {
        let mut out = String::from("ci summary:\n");
        let mut total = Duration::ZERO;
        for (name, outcome, elapsed) in &self.done {
            total += *elapsed;
            let outcome = match outcome {
                Outcome::Ok => "ok",
                Outcome::Failed => "FAILED",
                Outcome::Skipped => "skipped",
            };
            out.push_str(&format!(
                "  {name:<16} {outcome:<8} {:>8.1} s\n",
                elapsed.as_secs_f64()
            ));
        }
        out.push_str(&format!(
            "  {:<16} {:<8} {:>8.1} s\n",
            "total",
            "",
            total.as_secs_f64()
        ));
        let count = |wanted: Outcome| self.done.iter().filter(|s| s.1 == wanted).count();
        out.push_str(&format!(
            "steps: {} passed, {} failed, {} skipped\n",
            count(Outcome::Ok),
            count(Outcome::Failed),
            count(Outcome::Skipped)
        ));
        for note in &self.notes {
            out.push_str(note);
            out.push('\n');
        }
        out
    }
}

/// Runs the CI steps; prints the timing summary whether they pass or not.
pub(crate) fn run(config: &Config) -> Result<()> {
    let root = crate::workspace_root()?;
    let mut steps = Steps::default();
    eprintln!("xtask: {}", disk_report(&root));
    if let Ok(free) = free_bytes(&root)
        && free < LOW_DISK_BYTES
    {
        eprintln!(
            "xtask: warning: only {:.1} GiB free on the build's disk; a run from a clean \
             checkout fills about 3 GiB (target/ 1.8, fuzz/target/ 1.2). A full disk shows up as \
             a linker crash or 'No space left on device' in whichever step it hits.",
            free as f64 / (1u64 << 30) as f64
        );
    }
    let result = run_steps(config, &root, &mut steps);
    eprintln!("\n{}", steps.summary());
    eprintln!("xtask: {}", disk_report(&root));
    if result.is_ok() {
        eprintln!("xtask: ci passed");
    }
    result
}

fn run_steps(config: &Config, root: &Path, steps: &mut Steps) -> Result<()> {
    steps.run("fmt", || {
        cmd::run(
            cmd::cargo()
                .args(["fmt", "--all", "--", "--check"])
                .current_dir(root),
        )
    })?;
    if needs_libopus(root)? {
        if config.use_apt {
            steps.run("system packages", || install::ensure_apt(LIBOPUS_PACKAGES))?;
        } else {
            steps.skip("system packages", "--no-apt");
        }
    }
    steps.run("clippy", || {
        cmd::run(
            cmd::cargo()
                .args([
                    "clippy",
                    "--workspace",
                    "--all-targets",
                    "--all-features",
                    "--",
                    "-D",
                    "warnings",
                ])
                .current_dir(root),
        )
    })?;

    // Every server not skipped is started and required: the tests fail, not skip, when it
    // does not answer.
    let mut env: Vec<(String, String)> = Vec::new();
    let mut servers = Vec::new();
    for (kind, skip, flag) in [
        (&s3::KIND, config.skip_s3, "--skip-s3"),
        (&gcs::KIND, config.skip_gcs, "--skip-gcs"),
        (&azure::KIND, config.skip_azure, "--skip-azure"),
    ] {
        let step = format!("{} start", kind.command);
        if skip {
            steps.skip(&step, flag);
            continue;
        }
        let guard = steps.run(&step, || server::start_for_ci(kind))?;
        eprintln!(
            "xtask: {} server ready in {:.2} s",
            kind.label,
            guard.server().startup().as_secs_f64()
        );
        env.extend(guard.server().env().iter().cloned());
        env.push((kind.require_var.to_owned(), "1".to_owned()));
        servers.push(guard);
    }

    steps.run("test", || {
        let mut command = test_command(root)?;
        cmd::run(
            command
                .current_dir(root)
                .envs(env.iter().map(|(k, v)| (k, v))),
        )
    })?;
    match matrix_lines(root) {
        Ok(lines) => lines.into_iter().for_each(|line| steps.note(line)),
        Err(e) => steps.note(format!("matrix: not counted: {e:#}")),
    }
    steps.run("doctest", || {
        // --all-features so the doc tests reuse the build of the test step.
        cmd::run(
            cmd::cargo()
                .args(["test", "--workspace", "--doc", "--all-features"])
                .current_dir(root)
                .envs(env.iter().map(|(k, v)| (k, v))),
        )
    })?;
    steps.run("proptest", || {
        proptest::run(
            config.proptest_cases,
            proptest::Build::Test,
            proptest::Expensive::Capped,
            None,
            &env,
        )
    })?;
    // The fuzz step needs no storage server: stop them now (a failure above stops them on
    // drop).
    drop(servers);

    if config.skip_fuzz {
        steps.skip("fuzz smoke", "--skip-fuzz");
    } else {
        steps.run("fuzz smoke", || {
            fuzz::run(&fuzz::Config {
                target: None,
                secs: fuzz::SMOKE_SECS,
                use_apt: config.use_apt,
            })
        })?;
    }
    Ok(())
}

/// Free space below which `ci` warns before it starts: a clean run needs about 3 GiB
/// (measured 2026-11-28: target/ 1.8 GiB, fuzz/target/ 1.2 GiB), plus room for the S3 data.
const LOW_DISK_BYTES: u64 = 5 << 30;

/// One line on disk use: the size of the build directories and the space left on their
/// disk. A CI machine once ran out of disk in the middle of a run; this line shows how close
/// a run comes.
fn disk_report(root: &Path) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    let target = dir_size(&root.join("target")) as f64 / GIB;
    let fuzz = dir_size(&root.join("fuzz").join("target")) as f64 / GIB;
    let free = match free_bytes(root) {
        Ok(bytes) => format!("{:.1} GiB", bytes as f64 / GIB),
        Err(e) => format!("unknown ({e:#})"),
    };
    format!("disk: target/ {target:.1} GiB, fuzz/target/ {fuzz:.1} GiB, free {free}")
}

/// The bytes of all files under `dir` (0 when it does not exist); symbolic links are not
/// followed, unreadable entries are skipped.
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else {
                total += meta.len();
            }
        }
    }
    total
}

/// Free bytes on the file system holding `path`, from POSIX `df -Pk`.
fn free_bytes(path: &Path) -> Result<u64> {
    let out = cmd::output(std::process::Command::new("df").arg("-Pk").arg(path))?;
    parse_df_available(&out).with_context(|| format!("unexpected `df -Pk` output: {out:?}"))
}

/// The "Available" column (in KiB) of the data line of `df -Pk`, in bytes.
fn parse_df_available(out: &str) -> Option<u64> {
    let line = out.lines().nth(1)?;
    let kib: u64 = line.split_whitespace().nth(3)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Tells whether cargo-nextest is installed.
fn has_nextest() -> bool {
    cmd::succeeds(cmd::cargo().args(["nextest", "--version"]))
}

/// `cargo nextest run` (with the `ci` profile when `.config/nextest.toml` exists) when
/// cargo-nextest is installed, else `cargo test`.
fn test_command(root: &Path) -> Result<std::process::Command> {
    let mut command = cmd::cargo();
    if has_nextest() {
        command.args(["nextest", "run", "--workspace", "--all-features"]);
        if root.join(".config").join("nextest.toml").is_file() {
            command.args(["--profile", "ci"]);
        }
    } else {
        eprintln!("xtask: cargo-nextest is not installed; using cargo test");
        command.args(["test", "--workspace", "--all-features"]);
    }
    Ok(command)
}

/// The backends of the behaviour matrix, in the order the summary names them (the modules of
/// `tests/it/store_behavior.rs` and `tests/it/service_matrix.rs`).
const MATRIX_BACKENDS: [&str; 5] = ["fs", "memory", "s3", "gcs", "azblob"];

/// The test binaries that run each of their cases once per backend, as `<backend>::<case>`.
const MATRIX_BINARIES: [&str; 2] = ["store_behavior", "service_matrix"];

/// The matrix lines of the summary, from `cargo nextest list` with the test step's arguments
/// (so it reuses that build).
fn matrix_lines(root: &Path) -> Result<Vec<String>> {
    if !has_nextest() {
        bail!("cargo-nextest is not installed");
    }
    let json = cmd::output(
        cmd::cargo()
            .args([
                "nextest",
                "list",
                "--workspace",
                "--all-features",
                "--message-format",
                "json",
            ])
            .current_dir(root),
    )?;
    matrix_summary(&json).context("cannot read `cargo nextest list --message-format json`")
}

/// Counts the matrix's cases per backend in the JSON of `cargo nextest list --message-format
/// json` (`rust-suites` → `binary-name`, `testcases` → name → `ignored`): a test of a
/// [`MATRIX_BINARIES`] binary named `<backend>::<case>`, not ignored, is one case of
/// `<backend>`. Returns the line
/// `matrix: fs 22, memory 22, … (store_behavior 14 + service_matrix 8 each)` and, for each
/// backend whose cases differ from fs's, a line naming the cases it lacks (and has extra).
fn matrix_summary(json: &str) -> Result<Vec<String>> {
    let root: Value = serde_json::from_str(json).context("not JSON")?;
    let suites = root
        .get("rust-suites")
        .and_then(Value::as_object)
        .context("no `rust-suites` object")?;
    // Per backend, its cases as `binary::case`.
    let mut cases: BTreeMap<&str, BTreeSet<String>> = MATRIX_BACKENDS
        .iter()
        .map(|backend| (*backend, BTreeSet::new()))
        .collect();
    for binary in MATRIX_BINARIES {
        let mut listed = suites
            .values()
            .filter(|suite| suite.get("binary-name").and_then(Value::as_str) == Some(binary))
            .peekable();
        if listed.peek().is_none() {
            bail!("no test binary `{binary}` in the listing");
        }
        for suite in listed {
            let tests = suite
                .get("testcases")
                .and_then(Value::as_object)
                .with_context(|| format!("`{binary}` has no `testcases` object"))?;
            for (name, test) in tests {
                if test.get("ignored").and_then(Value::as_bool) == Some(true) {
                    continue;
                }
                let Some((module, case)) = name.split_once("::") else {
                    continue;
                };
                if let Some(set) = cases.get_mut(module) {
                    set.insert(format!("{binary}::{case}"));
                }
            }
        }
    }
    let fs = &cases["fs"];
    let per_binary = MATRIX_BINARIES
        .iter()
        .map(|binary| {
            let prefix = format!("{binary}::");
            let n = fs.iter().filter(|case| case.starts_with(&prefix)).count();
            format!("{binary} {n}")
        })
        .collect::<Vec<_>>()
        .join(" + ");
    let counts = MATRIX_BACKENDS
        .iter()
        .map(|backend| format!("{backend} {}", cases[backend].len()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut differing = Vec::new();
    for backend in &MATRIX_BACKENDS[1..] {
        let set = &cases[backend];
        let missing: Vec<&str> = fs.difference(set).map(String::as_str).collect();
        let extra: Vec<&str> = set.difference(fs).map(String::as_str).collect();
        let mut line = format!("  {backend} {}:", set.len());
        if !missing.is_empty() {
            line.push_str(&format!(" lacks {}", missing.join(", ")));
        }
        if !extra.is_empty() {
            let sep = if missing.is_empty() { "" } else { ";" };
            line.push_str(&format!("{sep} has extra {}", extra.join(", ")));
        }
        if !missing.is_empty() || !extra.is_empty() {
            differing.push(line);
        }
    }
    let scope = if differing.is_empty() {
        format!("{per_binary} each")
    } else {
        format!("fs: {per_binary}")
    };
    let mut lines = vec![format!("matrix: {counts} ({scope})")];
    lines.extend(differing);
    Ok(lines)
}

/// Tells whether some workspace package declares a feature named `libopus`.
fn needs_libopus(root: &Path) -> Result<bool> {
    let packages = metadata::packages(&root.join("Cargo.toml"))?;
    Ok(declares_libopus(&packages))
}

fn declares_libopus(packages: &[metadata::Package]) -> bool {
    packages
        .iter()
        .any(|p| p.features.iter().any(|f| f == "libopus"))
}

/// Makes sure the system packages that `--all-features` needs are installed (for commands
/// other than `ci`, which does this as a step of its own).
pub(crate) fn ensure_feature_packages(use_apt: bool) -> Result<()> {
    let root = crate::workspace_root()?;
    if use_apt && needs_libopus(&root)? {
        install::ensure_apt(LIBOPUS_PACKAGES)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::bail;

    #[test]
    fn df_available_column_is_read_in_bytes() {
        let out = "Filesystem     1024-blocks     Used Available Capacity Mounted on\n\
                   /dev/vda         263174212 84869468  11538332      89% /\n";
        assert_eq!(parse_df_available(out), Some(11_538_332 * 1024));
        assert_eq!(parse_df_available("Filesystem\n"), None);
        assert_eq!(parse_df_available("h\n/dev/x 1 2 many 3% /\n"), None);
    }

    #[test]
    fn dir_size_counts_nested_files_and_missing_dirs_as_zero() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-dir-size-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a").join("b"))?;
        std::fs::write(dir.join("one"), [0u8; 10])?;
        std::fs::write(dir.join("a").join("b").join("two"), [0u8; 32])?;
        let size = dir_size(&dir);
        std::fs::remove_dir_all(&dir)?;
        assert_eq!(size, 42);
        assert_eq!(dir_size(&dir), 0);
        Ok(())
    }

    #[test]
    fn a_failed_step_is_named_and_recorded() {
        let mut steps = Steps::default();
        assert_eq!(steps.run("one", || Ok(1)).ok(), Some(1));
        let err = steps
            .run("two", || -> Result<()> { bail!("boom") })
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default();
        assert!(err.starts_with("ci step `two` failed: boom"), "{err}");
        steps.skip("three", "--skip-three");
        let summary = steps.summary();
        let lines: Vec<&str> = summary.lines().collect();
        assert_eq!(lines.len(), 6, "{summary}");
        assert!(lines[1].contains("one") && lines[1].contains(" ok "));
        assert!(lines[2].contains("two") && lines[2].contains("FAILED"));
        assert!(lines[3].contains("three") && lines[3].contains("skipped"));
        assert!(lines[4].contains("total"));
        assert_eq!(lines[5], "steps: 1 passed, 1 failed, 1 skipped");
    }

    #[test]
    fn notes_follow_the_summary() {
        let mut steps = Steps::default();
        steps.skip("one", "--skip-one");
        steps.note("matrix: fs 1".to_owned());
        let summary = steps.summary();
        let lines: Vec<&str> = summary.lines().collect();
        assert_eq!(lines.len(), 5, "{summary}");
        assert_eq!(lines[3], "steps: 0 passed, 0 failed, 1 skipped");
        assert_eq!(lines[4], "matrix: fs 1");
    }

    /// A listing in the shape `cargo nextest list --message-format json` prints (0.9), with
    /// the matrix binaries' cases `names` and another binary.
    fn listing(store_behavior: &[String], service_matrix: &[String]) -> String {
        let testcases = |names: &[String]| -> Value {
            names
                .iter()
                .map(|name| {
                    let (name, ignored) = match name.strip_suffix(" (ignored)") {
                        Some(name) => (name, true),
                        None => (name.as_str(), false),
                    };
                    let case = serde_json::json!({
                        "kind": "test",
                        "ignored": ignored,
                        "filter-match": { "status": "matches" },
                    });
                    (name.to_owned(), case)
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let suite = |binary: &str, names: &[String]| {
            serde_json::json!({
                "package-name": "chunkvault-tests",
                "binary-id": format!("chunkvault-tests::{binary}"),
                "binary-name": binary,
                "kind": "test",
                "status": "listed",
                "testcases": testcases(names),
            })
        };
        serde_json::json!({
            "rust-build-meta": {},
            "test-count": 0,
            "rust-suites": {
                "chunkvault-tests::store_behavior": suite("store_behavior", store_behavior),
                "chunkvault-tests::service_matrix": suite("service_matrix", service_matrix),
                "chunkvault-tests::compaction": suite("compaction", &["fs::not_a_matrix_case".to_owned()]),
            },
        })
        .to_string()
    }

    /// `backend::case` for every backend.
    fn everywhere(cases: &[&str]) -> Vec<String> {
        MATRIX_BACKENDS
            .iter()
            .flat_map(|backend| cases.iter().map(move |case| format!("{backend}::{case}")))
            .collect()
    }

    #[test]
    fn matrix_cases_are_counted_per_backend() -> Result<()> {
        let mut store: Vec<String> = everywhere(&["put", "list", "purge"]);
        store.push("native_create_only_race".to_owned());
        store.push("s3_case_uris".to_owned());
        let service = everywhere(&["packs", "recorder"]);
        let lines = matrix_summary(&listing(&store, &service))?;
        assert_eq!(
            lines,
            ["matrix: fs 5, memory 5, s3 5, gcs 5, azblob 5 \
              (store_behavior 3 + service_matrix 2 each)"]
        );
        Ok(())
    }

    #[test]
    fn a_backend_lacking_cases_is_named_with_them() -> Result<()> {
        let store = everywhere(&["put", "list"]);
        let mut service: Vec<String> = everywhere(&["packs", "recorder"])
            .into_iter()
            .filter(|name| name != "gcs::packs" && name != "s3::recorder")
            .collect();
        // Ignored tests do not run: memory lacks it too. An extra case on azblob is named.
        service.retain(|name| name != "memory::recorder");
        service.push("memory::recorder (ignored)".to_owned());
        service.push("azblob::only_here".to_owned());
        let lines = matrix_summary(&listing(&store, &service))?;
        assert_eq!(
            lines,
            [
                "matrix: fs 4, memory 3, s3 3, gcs 3, azblob 5 \
                 (fs: store_behavior 2 + service_matrix 2)",
                "  memory 3: lacks service_matrix::recorder",
                "  s3 3: lacks service_matrix::recorder",
                "  gcs 3: lacks service_matrix::packs",
                "  azblob 5: has extra service_matrix::only_here",
            ]
        );
        Ok(())
    }

    #[test]
    fn a_missing_matrix_binary_is_an_error() {
        let json = serde_json::json!({ "rust-suites": {} }).to_string();
        let err = matrix_summary(&json).err().map(|e| format!("{e:#}"));
        assert_eq!(
            err.as_deref(),
            Some("no test binary `store_behavior` in the listing")
        );
        assert!(matrix_summary("not json").is_err());
    }

    #[test]
    fn libopus_is_detected_by_feature_name() {
        let package = |features: &[&str]| metadata::Package {
            name: "p".to_owned(),
            targets: Vec::new(),
            features: features.iter().map(|f| (*f).to_owned()).collect(),
        };
        assert!(!declares_libopus(&[package(&["default", "opus"])]));
        assert!(declares_libopus(&[package(&[]), package(&["libopus"])]));
    }
}
