//! `cargo xtask proptest`: the property tests, with many cases.
//!
//! Property tests are the test functions whose names start with `prop_`; the number of cases
//! per property comes from the `PROPTEST_CASES` environment variable, which proptest reads.

use anyhow::Result;

use crate::cmd;

/// Cases per property when `cargo xtask proptest` is run directly.
pub(crate) const DEFAULT_CASES: u32 = 10_000;

/// Which build the property tests run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Build {
    /// The test profile, the same build as `cargo test --all-features`: inside `ci` this
    /// compiles nothing new, so CI needs no second (release) copy of every test binary on disk.
    Test,
    /// The release profile: several times faster per case, for long runs.
    Release,
}

/// How many cases the expensive properties (whole-service ones, such as compaction and the
/// service model) get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expensive {
    /// At most their own cap (CI: the step must fit its time).
    Capped,
    /// Exactly `PROPTEST_CASES` (`CHUNKVAULT_PROPTEST_UNCAPPED=1`), for long runs.
    Uncapped,
}

/// Runs `cargo test --workspace [--release] --all-features -- prop_{filter}` with
/// `PROPTEST_CASES=cases` and the extra environment `env`.
pub(crate) fn run(
    cases: u32,
    build: Build,
    expensive: Expensive,
    filter: Option<&str>,
    env: &[(String, String)],
) -> Result<()> {
    eprintln!(
        "xtask: property tests prop_{} with PROPTEST_CASES={cases} ({build:?} build, \
         expensive properties {expensive:?})",
        filter.unwrap_or("*")
    );
    let root = crate::workspace_root()?;
    let mut command = cmd::cargo();
    command.args(["test", "--workspace"]);
    if build == Build::Release {
        command.arg("--release");
    }
    if expensive == Expensive::Uncapped {
        command.env("CHUNKVAULT_PROPTEST_UNCAPPED", "1");
    }
    let pattern = format!("prop_{}", filter.unwrap_or(""));
    cmd::run(
        command
            .args(["--all-features", "--", &pattern])
            .current_dir(root)
            .env("PROPTEST_CASES", cases.to_string())
            .envs(env.iter().map(|(k, v)| (k, v))),
    )
}
