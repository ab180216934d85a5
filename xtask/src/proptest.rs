//! `cargo xtask proptest`: the property tests, with many cases, in release mode.
//!
//! Property tests are the test functions whose names start with `prop_`; the number of cases
//! per property comes from the `PROPTEST_CASES` environment variable, which proptest reads.

use anyhow::Result;

use crate::cmd;

/// Cases per property when `cargo xtask proptest` is run directly.
pub(crate) const DEFAULT_CASES: u32 = 10_000;

/// Runs `cargo test --workspace --release --all-features -- prop_` with `PROPTEST_CASES=cases`
/// and the extra environment `env`.
pub(crate) fn run(cases: u32, env: &[(String, String)]) -> Result<()> {
    eprintln!("xtask: property tests with PROPTEST_CASES={cases}");
    let root = crate::workspace_root()?;
    cmd::run(
        cmd::cargo()
            .args([
                "test",
                "--workspace",
                "--release",
                "--all-features",
                "--",
                "prop_",
            ])
            .current_dir(root)
            .env("PROPTEST_CASES", cases.to_string())
            .envs(env.iter().map(|(k, v)| (k, v))),
    )
}
