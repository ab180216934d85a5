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

/// Runs `cargo test --workspace [--release] --all-features -- prop_` with
/// `PROPTEST_CASES=cases` and the extra environment `env`.
pub(crate) fn run(cases: u32, build: Build, env: &[(String, String)]) -> Result<()> {
    eprintln!("xtask: property tests with PROPTEST_CASES={cases} ({build:?} build)");
    let root = crate::workspace_root()?;
    let mut command = cmd::cargo();
    command.args(["test", "--workspace"]);
    if build == Build::Release {
        command.arg("--release");
    }
    cmd::run(
        command
            .args(["--all-features", "--", "prop_"])
            .current_dir(root)
            .env("PROPTEST_CASES", cases.to_string())
            .envs(env.iter().map(|(k, v)| (k, v))),
    )
}
