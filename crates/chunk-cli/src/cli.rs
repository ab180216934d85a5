//! The command line's grammar: global options and subcommands (clap derive).

use std::path::PathBuf;

use chunk_format::Timestamp;
use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::timestamp::parse_timestamp;

/// Store, list, export and check continuous recorded audio in object storage (Omi-compatible
/// bucket layout and chunkvault packs).
#[derive(Debug, Parser)]
#[command(
    name = "chunkvault",
    version,
    propagate_version = true,
    after_help = "Timestamps (TS) are decimal epoch seconds as Omi writes them: 1786961845.727. \
                  Text with more decimals is rounded to the millisecond as Omi does (parsed as \
                  a float, then rounded like Python's '%.3f').\n\n\
                  Cloud credentials not given in the --store URI come from the usual \
                  environment variables, as OpenDAL loads them: s3:// AWS_ACCESS_KEY_ID, \
                  AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION, AWS_PROFILE (and the \
                  instance role); gcs:// GOOGLE_APPLICATION_CREDENTIALS (and the VM's service \
                  account); azblob:// AZURE_STORAGE_ACCOUNT_NAME, AZURE_STORAGE_ACCOUNT_KEY, \
                  AZURE_STORAGE_SAS_TOKEN (and AZURE_CLIENT_ID / AZURE_TENANT_ID / \
                  AZURE_CLIENT_SECRET for a service principal)."
)]
pub(crate) struct Cli {
    /// Options every subcommand takes (before or after the subcommand).
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// Options accepted before or after the subcommand.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Store URI: fs:///abs/path, fs://relative/path, memory://, s3://bucket?endpoint=…&region=…,
    /// gcs://bucket, azblob://container?account_name=…&endpoint=…
    #[arg(
        long,
        global = true,
        env = "CHUNKVAULT_STORE",
        hide_env_values = true,
        default_value = "fs://./chunkvault-data",
        value_name = "URI"
    )]
    pub(crate) store: String,
    /// File holding the master secret (raw bytes, as Omi's ENCRYPTION_SECRET; one trailing
    /// newline is dropped). Without it the secret comes from the environment variable
    /// CHUNKVAULT_SECRET; without either, encryption is off.
    #[arg(long, global = true, value_name = "PATH")]
    pub(crate) secret_file: Option<PathBuf>,
    /// Keyring file: several master secrets by key id, the active one, Omi's, the retired
    /// ones (format in docs/FORMAT.md, "Keyring file"; made by `chunkvault keys new`). Instead
    /// of a single secret, never together with one.
    #[arg(
        long,
        global = true,
        env = "CHUNKVAULT_KEYRING",
        hide_env_values = true,
        value_name = "PATH"
    )]
    pub(crate) keyring: Option<PathBuf>,
    /// Refuse plaintext packs for every user, as they are always refused for a user at level
    /// enhanced: for stores where every user's audio is sealed (anyone who can write to the
    /// bucket can make a plaintext pack).
    #[arg(long, global = true)]
    pub(crate) require_sealed: bool,
    /// Machine-readable JSON on stdout (and no progress bars).
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// More logging on stderr: -v info, -vv debug, -vvv trace (RUST_LOG overrides).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub(crate) verbose: u8,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// The main job, end to end: record synthesized speech, list, export, verify, summarize.
    ///
    /// Synthesizes speech-like audio for a few users, records it in 5 s chunks through the
    /// recorder (packs, and one conversation in Omi's layout), lists it, exports one
    /// conversation to WAV, verifies every chunk round-trips byte-exact, and prints a summary.
    Demo(DemoArgs),
    /// Store a PCM16 mono WAV (or raw .pcm with --sample-rate) as chunks of one conversation.
    Ingest(IngestArgs),
    /// List a conversation's audio objects (and foreign objects apart).
    Ls(ConversationArgs),
    /// Download and merge audio of a conversation to WAV or raw PCM (streamed).
    Export(ExportArgs),
    /// Delete chunks of a conversation by timestamp, or the whole conversation.
    Rm(RmArgs),
    /// Delete every object of a user (asks for --yes).
    Purge(PurgeArgs),
    /// Read and decode every object; report bad ones with the reason (exit 1 if any).
    Verify(VerifyArgs),
    /// Report a user's timeline per conversation: covered time, gaps, overlaps, duplicates,
    /// names that disagree with their content, undecodable and foreign objects (exit 1 on an
    /// undecodable object; with --strict also on any gap, overlap or duplicate).
    Audit(AuditArgs),
    /// Objects, bytes, audio duration and write operations, with the monthly cost at S3 prices.
    Stats(StatsArgs),
    /// Merge a conversation's small objects (Omi objects, short packs) into packs: show the
    /// plan, then apply it.
    Compact(CompactArgs),
    /// Manage the keyring file named by --keyring.
    #[command(subcommand)]
    Keys(KeysCommand),
}

/// `keys` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create the keyring file with one fresh active key, or, when it exists, add a fresh key
    /// and make it active (the Omi key stays where it is). Prints the ids, never a secret.
    New,
}

/// `demo` options.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Minutes of audio recorded per user.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=600))]
    pub(crate) minutes: u32,
    /// Users recording at the same time.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub(crate) users: u32,
    /// Where the exported WAV goes.
    #[arg(long, value_name = "PATH", default_value = "chunkvault-demo.wav")]
    pub(crate) wav: PathBuf,
}

/// A user and one of their conversations.
#[derive(Debug, Args)]
pub(crate) struct ConversationArgs {
    /// User id.
    #[arg(long, value_name = "U")]
    pub(crate) uid: String,
    /// Conversation id.
    #[arg(long, value_name = "C")]
    pub(crate) conversation: String,
}

/// Protection level of ingested audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LevelArg {
    /// Plaintext objects.
    Standard,
    /// Sealed with the user's key (needs the secret).
    Enhanced,
    /// Client-sealed payloads, stored as given.
    E2ee,
}

/// Object layout of ingested audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LayoutArg {
    /// Omi's batches: FIRST-LAST.batch.{bin,enc}.
    Omi,
    /// chunkvault packs: START-END.pack.
    Pack,
}

/// `ingest` options.
#[derive(Debug, Args)]
pub(crate) struct IngestArgs {
    #[command(flatten)]
    pub(crate) target: ConversationArgs,
    /// Start of the audio (epoch seconds); default: now minus the file's duration.
    #[arg(long, value_name = "TS", value_parser = parse_timestamp)]
    pub(crate) start: Option<Timestamp>,
    /// Protection level.
    #[arg(long, value_enum, default_value_t = LevelArg::Standard)]
    pub(crate) level: LevelArg,
    /// Object layout: chunkvault packs (the default for new writes), or Omi's batches (readable
    /// by Omi's own code).
    #[arg(long, value_enum, default_value_t = LayoutArg::Pack)]
    pub(crate) layout: LayoutArg,
    /// Seconds of audio per chunk.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub(crate) chunk_secs: u32,
    /// Seconds of audio per stored object (batch or pack).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub(crate) batch_secs: u32,
    /// Sample rate of a raw .pcm file (a WAV's comes from its header).
    #[arg(long, value_name = "HZ", value_parser = clap::value_parser!(u32).range(1..=384_000))]
    pub(crate) sample_rate: Option<u32>,
    /// PCM16 mono WAV, or raw PCM16LE mono `.pcm`.
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
}

/// Output format of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExportFormat {
    /// PCM16 mono WAV with a canonical 44-byte header.
    Wav,
    /// Raw PCM16LE mono.
    Pcm,
}

/// `export` options.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    pub(crate) target: ConversationArgs,
    /// Chunks starting at these timestamps (Omi style), comma separated.
    #[arg(
        long,
        value_name = "T1,T2,…",
        value_delimiter = ',',
        num_args = 1..,
        value_parser = parse_timestamp,
        required_unless_present = "from",
        conflicts_with_all = ["from", "to"],
    )]
    pub(crate) timestamps: Vec<Timestamp>,
    /// Start of a time range (inclusive).
    #[arg(long, value_name = "TS", value_parser = parse_timestamp, requires = "to")]
    pub(crate) from: Option<Timestamp>,
    /// End of a time range (exclusive).
    #[arg(long, value_name = "TS", value_parser = parse_timestamp, requires = "from")]
    pub(crate) to: Option<Timestamp>,
    /// Do not fill gaps between objects with silence.
    #[arg(long)]
    pub(crate) no_fill_gaps: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Wav)]
    pub(crate) format: ExportFormat,
    /// Sample rate of Omi-layout objects, which record none (packs carry their own; the
    /// export's rate and WAV header are those of the data).
    #[arg(long, value_name = "HZ", default_value_t = 16_000,
          value_parser = clap::value_parser!(u32).range(1..=384_000))]
    pub(crate) sample_rate: u32,
    /// Longest output, in seconds of audio (default 24 h): a request that would span more,
    /// gaps filled with silence included, is refused before anything is written.
    #[arg(long, value_name = "SECS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_span: u64,
    /// Skip objects that cannot be opened (wrong or missing secret, damage) or that vanished
    /// while exporting, and report them, instead of failing the export.
    #[arg(long)]
    pub(crate) skip_bad: bool,
    /// Output file (written whole or not at all), or `-` for stdout (WAV to stdout is first
    /// spooled through a temporary file, since its header needs the length).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub(crate) output: String,
}

/// `rm` options.
#[derive(Debug, Args)]
pub(crate) struct RmArgs {
    #[command(flatten)]
    pub(crate) target: ConversationArgs,
    /// Delete the objects holding chunks that start at these timestamps, comma separated.
    #[arg(
        long,
        value_name = "T1,T2,…",
        value_delimiter = ',',
        num_args = 1..,
        value_parser = parse_timestamp,
        required_unless_present = "all",
        conflicts_with = "all",
    )]
    pub(crate) timestamps: Vec<Timestamp>,
    /// Delete the whole conversation (every object under its prefixes).
    #[arg(long)]
    pub(crate) all: bool,
}

/// `purge` options.
#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    /// User id.
    #[arg(long, value_name = "U")]
    pub(crate) uid: String,
    /// Really delete everything of this user.
    #[arg(long)]
    pub(crate) yes: bool,
}

/// `verify` options.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// Only this user (default: every user in the store).
    #[arg(long, value_name = "U")]
    pub(crate) uid: Option<String>,
    /// Only this conversation (needs --uid).
    #[arg(long, value_name = "C", requires = "uid")]
    pub(crate) conversation: Option<String>,
}

/// `audit` options.
#[derive(Debug, Args)]
pub(crate) struct AuditArgs {
    /// The user.
    #[arg(long, value_name = "U")]
    pub(crate) uid: String,
    /// Only this conversation (default: every conversation of the user).
    #[arg(long, value_name = "C")]
    pub(crate) conversation: Option<String>,
    /// Also fail (exit 1) on any gap, overlap or duplicate.
    #[arg(long)]
    pub(crate) strict: bool,
    /// Sample rate of Omi-layout objects, which record none (packs carry their own).
    #[arg(long, value_name = "HZ", default_value_t = 16_000,
          value_parser = clap::value_parser!(u32).range(1..=384_000))]
    pub(crate) sample_rate: u32,
}

/// `stats` options.
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Only this user (default: the whole store).
    #[arg(long, value_name = "U")]
    pub(crate) uid: Option<String>,
}

/// `compact` options.
#[derive(Debug, Args)]
pub(crate) struct CompactArgs {
    #[command(flatten)]
    pub(crate) target: ConversationArgs,
    /// Show the plan only.
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Audio per pack: packs are filled up to this, and packs this long are left alone.
    #[arg(long, value_name = "SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u32).range(1..=86_400))]
    pub(crate) target_secs: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("chunkvault").chain(args.iter().copied()))
    }

    #[test]
    fn global_options_before_or_after_the_subcommand() {
        let before = parse(&[
            "--json",
            "--store",
            "memory://",
            "ls",
            "--uid",
            "u",
            "--conversation",
            "c",
        ]);
        let after = parse(&[
            "ls",
            "--uid",
            "u",
            "--conversation",
            "c",
            "--json",
            "--store",
            "memory://",
        ]);
        for cli in [before, after] {
            let cli = cli.map_err(|e| e.to_string());
            assert!(
                matches!(&cli, Ok(c) if c.global.json && c.global.store == "memory://"),
                "{cli:?}"
            );
        }
    }

    #[test]
    fn export_needs_exactly_one_selection() {
        let base = ["export", "--uid", "u", "--conversation", "c", "-o", "-"];
        let with = |extra: &[&str]| parse(&[&base[..], extra].concat());
        assert!(with(&[]).is_err());
        assert!(with(&["--from", "1.000"]).is_err());
        assert!(with(&["--timestamps", "1.000", "--from", "1.000", "--to", "2.000"]).is_err());
        let ok = with(&["--timestamps", "1.000,2.5"]).map_err(|e| e.to_string());
        match ok.map(|c| c.command) {
            Ok(Command::Export(args)) => assert_eq!(
                args.timestamps
                    .iter()
                    .map(|t| t.as_millis())
                    .collect::<Vec<_>>(),
                [1_000, 2_500]
            ),
            other => panic!("{other:?}"),
        }
        assert!(with(&["--from", "1.000", "--to", "2.000"]).is_ok());
        assert!(with(&["--timestamps", "x"]).is_err());
    }

    #[test]
    fn rm_needs_timestamps_or_all() {
        let base = ["rm", "--uid", "u", "--conversation", "c"];
        let with = |extra: &[&str]| parse(&[&base[..], extra].concat());
        assert!(with(&[]).is_err());
        assert!(with(&["--all", "--timestamps", "1.000"]).is_err());
        assert!(with(&["--all"]).is_ok());
        assert!(with(&["--timestamps", "1.000"]).is_ok());
    }
}
