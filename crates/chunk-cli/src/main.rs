//! `chunkvault`: store, list, export, check and account for continuous recorded audio in object
//! storage — Omi's bucket layout and chunkvault packs — from the command line.
//!
//! ```text
//! chunkvault demo                                   # the main job, end to end, on ./chunkvault-data
//! chunkvault ingest --uid U --conversation C talk.wav
//! chunkvault ls --uid U --conversation C [--json]
//! chunkvault export --uid U --conversation C --from TS --to TS -o out.wav
//! chunkvault verify; chunkvault stats
//! chunkvault keys new --keyring keys.txt            # then --keyring keys.txt instead of a secret
//! ```
//!
//! Global options (`--store URI`, `--secret-file`, `--json`, `-v`) go before or after the
//! subcommand. The store defaults to `fs://./chunkvault-data` (env `CHUNKVAULT_STORE`); the master
//! secret comes from `--secret-file` or the environment variable `CHUNKVAULT_SECRET` (raw bytes,
//! as Omi's `ENCRYPTION_SECRET`), or several come from a keyring file (`--keyring`, env
//! `CHUNKVAULT_KEYRING`). Errors print one line, `chunkvault: <error>`, and the exit
//! status is non-zero.

#[macro_use]
mod output;
mod cli;
mod commands;
mod context;
mod cost;
mod progress;
mod synth;
mod timestamp;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::context::Context;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.global.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(&anyhow::Error::new(error).context("starting the runtime")),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // `keys` works on the keyring file alone: it may not exist yet, and needs no store.
    if let Command::Keys(command) = &cli.command {
        return commands::keys::run(&cli.global, command);
    }
    let ctx = Context::new(&cli.global)?;
    match &cli.command {
        Command::Demo(args) => commands::demo::run(&ctx, args).await,
        Command::Ingest(args) => commands::ingest::run(&ctx, args).await,
        Command::Ls(args) => commands::ls::run(&ctx, args).await,
        Command::Export(args) => commands::export::run(&ctx, args).await,
        Command::Rm(args) => commands::rm::run(&ctx, args).await,
        Command::Purge(args) => commands::purge::run(&ctx, args).await,
        Command::Verify(args) => commands::verify::run(&ctx, args).await,
        Command::Audit(args) => commands::audit::run(&ctx, args).await,
        Command::Stats(args) => commands::stats::run(&ctx, args).await,
        Command::Compact(args) => commands::compact::run(&ctx, args).await,
        Command::Keys(_) => unreachable!("handled above"),
    }
}

/// Prints the error as one line and returns the failure status.
fn fail(error: &anyhow::Error) -> ExitCode {
    // Escaped: an error can quote a name from the store (anyone's bytes), and must stay one
    // line that no name can forge or recolour.
    let text = output::escaped(&format!("{error:#}"));
    output::note(&format!("chunkvault: {text}"));
    ExitCode::FAILURE
}

/// Logs to stderr: warnings by default, more with each `-v`; `RUST_LOG` overrides.
fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    // A second initialisation can only fail in tests; logging is best effort.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(verbose >= 2)
        .with_ansi(std::io::stderr().is_terminal())
        // Never print (and so never panic) from inside the subscriber when stderr is closed:
        // a panic in a recorder upload task would leave the recorder waiting for it.
        .log_internal_errors(false)
        .try_init();
}
