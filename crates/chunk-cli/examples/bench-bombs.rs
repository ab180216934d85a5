//! `cargo xtask bench bombs`: peak RSS of the release `chunkvault` binary on hostile objects —
//! objects small in the store that decode to far more than a reader may hold, and one plain
//! object simply large — so a command that reads them must refuse or stream them, not
//! allocate their decoded size.
//!
//! **Setup** (in this process) builds the binary (`$CARGO build --release -p chunk-cli --bin
//! chunkvault`; it is found next to this example's directory, `target/release/chunkvault`) and
//! writes each hostile object as a file at its store path `ROOT/chunks/u1/{object}/{name}` of a
//! temporary `fs://` store, one conversation per object:
//!
//! - `zstd-bomb`: a plaintext `Codec::ZstdPcm16Le` pack (16 kHz mono) of 60 consecutive chunks
//!   of 64 MiB of zeros each (`pack::MAX_CHUNK_BYTES`, 2 097.152 s of audio each): 3.75 GiB of
//!   PCM in about a hundred kilobytes;
//! - `opus-bomb`: an Omi `.opus` object whose container says 8 000 000 packets, each of length
//!   zero (16 MB);
//! - `big-bin`: an Omi `.bin` of 512 MiB of non-zero PCM (64 MiB with `--quick`).
//!
//! The objects are kept outside the store; before each measurement the conversation is laid
//! anew from them, so every command sees the pristine object whatever the previous one did.
//!
//! **Measure**: for each object, `export` of its first 10 s (`--format pcm -o -`), `rm
//! --timestamps` of its start, `compact` and `verify`; then `compact+neighbour`, `compact` with a
//! second, ordinary object beside the hostile one (an Omi `.bin` of 1 s, a minute after the end
//! of its audio), since `compact` leaves a conversation of one object alone without reading it.
//! Each runs in a fresh wrapper process — this executable re-run as `measure CLI ARGS…` — which
//! spawns the CLI once, drains its stdout (counting the bytes), waits for it and prints one
//! `result` line with the exit status, the wall time and the children's peak RSS
//! (`getrusage(RUSAGE_CHILDREN).ru_maxrss`, KiB on Linux): since the wrapper has exactly one
//! child, that is the CLI run's own peak. The CLI's stderr passes through; the table shows its
//! `chunkvault: …` error line (or first line; for a command that printed nothing there, the last
//! line of its stdout, except `export`'s audio), cut at 100 characters, and what the
//! conversation holds afterwards (the object kept, changed or deleted, and any new object).
//! Refusing a bomb with a one-line error and a non-zero exit is the expected outcome.
//!
//! Options: `--objects zstd-bomb,opus-bomb,big-bin` (default all), `--quick`. Exits with status 1
//! if any command's peak RSS is above 64 MiB (the bar).

use std::error::Error;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

use chunk_format::Timestamp;
use chunk_format::pack::{Codec, MAX_CHUNK_BYTES, PackConfig, PackEncoder, PackIndex};
use nix::sys::resource::{UsageWho, getrusage};

type BoxResult<T> = Result<T, Box<dyn Error>>;

const USER: &str = "u1";
/// Start of every object, in epoch seconds (a whole second, so names end in `.000`).
const T0_SECS: u64 = 1_786_961_845;
const SAMPLE_RATE: u32 = 16_000;
/// Chunks in the zstd bomb.
const ZSTD_CHUNKS: u64 = 60;
/// Packets in the Opus bomb.
const OPUS_PACKETS: u32 = 8_000_000;
const MIB: u64 = 1 << 20;
/// The bar: no command may peak above this.
const BAR_MIB: f64 = 64.0;
/// Seconds of audio each `export` asks for.
const EXPORT_SECS: u64 = 10;
const ALL_OBJECTS: [&str; 3] = ["zstd-bomb", "opus-bomb", "big-bin"];
/// What is measured on each object: the CLI subcommand, and with `+neighbour` the same with a
/// small ordinary object beside the hostile one.
const COMMANDS: [&str; 5] = ["export", "rm", "compact", "verify", "compact+neighbour"];
/// The suffix of a command run with a neighbour.
const WITH_NEIGHBOUR: &str = "+neighbour";
/// Seconds between the end of a hostile object's audio and its neighbour.
const NEIGHBOUR_GAP_SECS: u64 = 60;
/// The neighbour: 1 s of 16 kHz mono PCM16.
const NEIGHBOUR_BYTES: u64 = 32_000;
/// Bytes of the CLI's stdout the wrapper keeps for the report.
const STDOUT_HEAD: u64 = 4096;

/// A hostile object kept outside the store: its object name and where its bytes are.
struct Object {
    kind: &'static str,
    name: String,
    file: PathBuf,
    size: u64,
    /// End of its audio (as its name or header says), in whole seconds rounded up.
    end_secs: u64,
}

impl Object {
    /// The neighbour's object name: an Omi `.bin` a minute after this object's audio.
    fn neighbour_name(&self) -> String {
        format!("{}.000.bin", self.end_secs + NEIGHBOUR_GAP_SECS)
    }
}

/// One measured command.
struct Row {
    object: &'static str,
    command: &'static str,
    status: String,
    /// The CLI's `chunkvault: …` line (or first line) on stderr; without one, `stdout: ` and the
    /// last line of stdout's first 4 KiB (not for `export`, whose stdout is audio).
    message: String,
    /// What is left of the object in its conversation afterwards.
    after: String,
    stdout_bytes: u64,
    seconds: f64,
    peak_mib: f64,
}

/// The `.bin` pattern: never zero, so it cannot be mistaken for silence.
fn pattern_byte(i: u64) -> u8 {
    1 + (i % 251) as u8
}

/// The zstd bomb: returns (name, end in seconds rounded up, bytes).
fn zstd_bomb() -> BoxResult<(String, u64, Vec<u8>)> {
    let zeros = vec![0u8; MAX_CHUNK_BYTES as usize];
    // Milliseconds of one 64 MiB chunk of 16 kHz mono PCM16: 2 097 152.
    let chunk_ms = u64::from(MAX_CHUNK_BYTES) / 2 * 1000 / u64::from(SAMPLE_RATE);
    let mut encoder = PackEncoder::new(PackConfig::new(Codec::ZstdPcm16Le, SAMPLE_RATE, 1), None)?;
    let mut object = Vec::new();
    for i in 0..ZSTD_CHUNKS {
        let start = Timestamp::from_millis(T0_SECS * 1000 + i * chunk_ms)
            .ok_or("timestamp out of range")?;
        object.extend_from_slice(&encoder.push_chunk(start, &zeros)?);
    }
    object.extend_from_slice(&encoder.finish()?);
    let index = PackIndex::from_object(&object, None)?;
    let end_secs = index.end().as_millis().div_ceil(1000);
    Ok((index.object_name()?.to_string(), end_secs, object))
}

/// The Opus bomb: a container header claiming `OPUS_PACKETS` packets, all of length zero.
fn write_opus_bomb(path: &Path) -> BoxResult<()> {
    let mut out = BufWriter::new(File::create(path)?);
    out.write_all(&OPUS_PACKETS.to_le_bytes())?;
    out.write_all(&0u32.to_le_bytes())?;
    let zeros = vec![0u8; 2 * 1_000_000];
    for _ in 0..OPUS_PACKETS / 1_000_000 {
        out.write_all(&zeros)?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

/// A `.bin` of `len` bytes of the pattern, written 1 MiB at a time.
fn write_big_bin(path: &Path, len: u64) -> BoxResult<()> {
    let mut out = BufWriter::new(File::create(path)?);
    let mut block = vec![0u8; MIB as usize];
    let mut written = 0u64;
    while written < len {
        let n = (len - written).min(MIB) as usize;
        for (j, byte) in block[..n].iter_mut().enumerate() {
            *byte = pattern_byte(written + j as u64);
        }
        out.write_all(&block[..n])?;
        written += n as u64;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(())
}

/// Writes object `kind` into `dir` (outside the store).
fn make_object(kind: &'static str, dir: &Path, quick: bool) -> BoxResult<Object> {
    let started = Instant::now();
    let file = dir.join(kind);
    let (name, end_secs) = match kind {
        "zstd-bomb" => {
            let (name, end_secs, bytes) = zstd_bomb()?;
            fs::write(&file, bytes)?;
            (name, end_secs)
        }
        "opus-bomb" => {
            write_opus_bomb(&file)?;
            // The container claims no PCM; Omi objects' duration is what they decode to.
            (format!("{T0_SECS}.000.opus"), T0_SECS)
        }
        "big-bin" => {
            let len = if quick { 64 * MIB } else { 512 * MIB };
            write_big_bin(&file, len)?;
            let end_secs = T0_SECS + len.div_ceil(2 * u64::from(SAMPLE_RATE));
            (format!("{T0_SECS}.000.bin"), end_secs)
        }
        other => return Err(format!("unknown object {other}").into()),
    };
    let size = fs::metadata(&file)?.len();
    eprintln!(
        "bench-bombs: {kind}: {name}, {size} bytes stored, written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(Object {
        kind,
        name,
        file,
        size,
        end_secs,
    })
}

/// Lays the conversation of `object` anew in the store at `root`: the pristine object, and its
/// neighbour if asked.
fn restore(root: &Path, object: &Object, neighbour: bool) -> BoxResult<()> {
    for top in ["chunks", "audio", "merged"] {
        let dir = root.join(top).join(USER).join(object.kind);
        if dir.exists() {
            fs::remove_dir_all(&dir)?;
        }
    }
    let dir = root.join("chunks").join(USER).join(object.kind);
    fs::create_dir_all(&dir)?;
    fs::copy(&object.file, dir.join(&object.name))?;
    if neighbour {
        write_big_bin(&dir.join(object.neighbour_name()), NEIGHBOUR_BYTES)?;
    }
    Ok(())
}

/// What the conversation of `object` holds now: the object `kept` (unchanged), `changed` or
/// `deleted`, then any other object but an unchanged neighbour, with its size.
fn after(root: &Path, object: &Object) -> BoxResult<String> {
    let dir = root.join("chunks").join(USER).join(object.kind);
    let mut files = Vec::new();
    if dir.exists() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            files.push((name, entry.metadata()?.len()));
        }
    }
    files.sort();
    let mut state = match files.iter().find(|(name, _)| *name == object.name) {
        Some((_, len)) if *len == object.size => "kept".to_owned(),
        Some((_, len)) => format!("changed ({len} B)"),
        None => "deleted".to_owned(),
    };
    let neighbour = object.neighbour_name();
    for (name, len) in &files {
        let unchanged_neighbour = *name == neighbour && *len == NEIGHBOUR_BYTES;
        if *name != object.name && !unchanged_neighbour {
            state.push_str(&format!("; new `{name}` ({len} B)"));
        }
    }
    Ok(state)
}

/// The CLI arguments of `command` (a [`COMMANDS`] entry) on `object`'s conversation.
fn cli_args(root: &Path, object: &Object, command: &str) -> Vec<String> {
    let command = command.trim_end_matches(WITH_NEIGHBOUR);
    let from = format!("{T0_SECS}.000");
    let to = format!("{}.000", T0_SECS + EXPORT_SECS);
    let mut args = vec![
        "--store".to_owned(),
        format!("fs://{}", root.display()),
        command.to_owned(),
        "--uid".to_owned(),
        USER.to_owned(),
        "--conversation".to_owned(),
        object.kind.to_owned(),
    ];
    let extra: Vec<&str> = match command {
        "export" => vec!["--from", &from, "--to", &to, "--format", "pcm", "-o", "-"],
        "rm" => vec!["--timestamps", &from],
        _ => Vec::new(),
    };
    args.extend(extra.into_iter().map(str::to_owned));
    args
}

fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => status.to_string(),
    }
}

/// The wrapper: runs `CLI ARGS…` once and prints its status, time and peak RSS.
fn measure_child(args: &[String]) -> BoxResult<()> {
    let [cli, cli_args @ ..] = args else {
        return Err("usage: measure CLI ARGS…".into());
    };
    let started = Instant::now();
    let mut child = Command::new(cli)
        .args(cli_args)
        .env_remove("CHUNKVAULT_SECRET")
        .env_remove("CHUNKVAULT_STORE")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut stdout = child.stdout.take().ok_or("no stdout pipe")?;
    // The first bytes are kept for the report (a message; for `export`, audio), the rest counted.
    let mut head = Vec::new();
    (&mut stdout).take(STDOUT_HEAD).read_to_end(&mut head)?;
    let stdout_bytes = head.len() as u64 + io::copy(&mut stdout, &mut io::sink())?;
    let status = child.wait()?;
    let elapsed = started.elapsed();
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN)?;
    println!(
        "result status={} elapsed_ns={} stdout_bytes={stdout_bytes} maxrss_kib={}",
        describe(status).replace(' ', "_"),
        elapsed.as_nanos(),
        usage.max_rss()
    );
    let head = String::from_utf8_lossy(&head);
    let summary = head.lines().rfind(|line| !line.trim().is_empty());
    println!("stdout {}", summary.unwrap_or(""));
    Ok(())
}

/// Runs one measurement in a fresh wrapper process.
fn run_measured(cli: &Path, object: &Object, command: &'static str, root: &Path) -> BoxResult<Row> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg("measure")
        .arg(cli)
        .args(cli_args(root, object, command))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Drain stderr on a thread so that a chatty CLI cannot block on a full pipe.
    let mut stderr_pipe = child.stderr.take().ok_or("no stderr pipe")?;
    let stderr_thread = std::thread::spawn(move || {
        let mut text = Vec::new();
        stderr_pipe.read_to_end(&mut text).map(|_| text)
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .ok_or("no stdout pipe")?
        .read_to_string(&mut stdout)?;
    let status = child.wait()?;
    let stderr = stderr_thread
        .join()
        .map_err(|_| "stderr reader panicked")??;
    let stderr = String::from_utf8_lossy(&stderr);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("result "))
        .ok_or_else(|| {
            format!(
                "measure {command} on {} failed ({status}): {stderr}",
                object.kind
            )
        })?;
    let field = |key: &str| -> BoxResult<&str> {
        Ok(line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .ok_or_else(|| format!("no {key} in {line:?}"))?)
    };
    let error_line = stderr
        .lines()
        .find(|l| l.starts_with("chunkvault: "))
        .or_else(|| stderr.lines().find(|l| !l.trim().is_empty()));
    let stdout_line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("stdout "))
        .unwrap_or("");
    let message = match error_line {
        Some(line) => line.to_owned(),
        None if command != "export" && !stdout_line.is_empty() => format!("stdout: {stdout_line}"),
        None => String::new(),
    };
    Ok(Row {
        object: object.kind,
        command,
        status: field("status")?.replace('_', " "),
        message: message.chars().take(100).collect(),
        after: after(root, object)?,
        stdout_bytes: field("stdout_bytes")?.parse()?,
        seconds: field("elapsed_ns")?.parse::<f64>()? / 1e9,
        peak_mib: field("maxrss_kib")?.parse::<f64>()? / 1024.0,
    })
}

/// Builds the release CLI and returns its path, next to this example's directory.
fn build_cli() -> BoxResult<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "chunk-cli",
            "--bin",
            "chunkvault",
        ])
        .status()?;
    if !status.success() {
        return Err(format!("building chunkvault failed ({status})").into());
    }
    let exe = std::env::current_exe()?;
    let release = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot find target/release from the example's path")?;
    let cli = release.join("chunkvault");
    if !cli.is_file() {
        return Err(format!("{} does not exist", cli.display()).into());
    }
    Ok(cli)
}

fn driver(args: &[String]) -> BoxResult<bool> {
    let mut kinds: Vec<&'static str> = ALL_OBJECTS.to_vec();
    let mut quick = false;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        match flag.as_str() {
            "--objects" => {
                let list = rest.next().ok_or("--objects needs a value")?;
                kinds = list
                    .split(',')
                    .map(|name| {
                        ALL_OBJECTS
                            .iter()
                            .copied()
                            .find(|known| *known == name.trim())
                            .ok_or_else(|| format!("unknown object {name}; known: {ALL_OBJECTS:?}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--quick" => quick = true,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    let cli = build_cli()?;
    let work = tempfile::tempdir()?;
    let (pristine, root) = (work.path().join("objects"), work.path().join("store"));
    fs::create_dir_all(&pristine)?;
    fs::create_dir_all(&root)?;
    let objects = kinds
        .iter()
        .map(|kind| make_object(kind, &pristine, quick))
        .collect::<BoxResult<Vec<Object>>>()?;
    let mut rows = Vec::new();
    for object in &objects {
        for command in COMMANDS {
            restore(&root, object, command.ends_with(WITH_NEIGHBOUR))?;
            let row = run_measured(&cli, object, command, &root)?;
            eprintln!(
                "bench-bombs: {} {}: {} in {:.2} s, peak {:.1} MiB, object {}, {}",
                row.object,
                row.command,
                row.status,
                row.seconds,
                row.peak_mib,
                row.after,
                row.message
            );
            rows.push(row);
        }
    }
    println!(
        "bench-bombs: peak RSS of `chunkvault` (release, fs store) per command on hostile \
         objects; one wrapper process per command; bar {BAR_MIB} MiB\n"
    );
    println!("| Object | Stored bytes |");
    println!("|---|---:|");
    for object in &objects {
        println!(
            "| `{}` (`{}`) | {} |",
            object.kind, object.name, object.size
        );
    }
    println!();
    println!(
        "| Object | Command | Exit | Stdout bytes | Wall s | Peak RSS MiB | Object after | Message |"
    );
    println!("|---|---|---|---:|---:|---:|---|---|");
    let mut met = true;
    for row in &rows {
        let over = row.peak_mib > BAR_MIB;
        met &= !over;
        println!(
            "| `{}` | `{}` | {} | {} | {:.2} | {}{:.1}{} | {} | {} |",
            row.object,
            row.command,
            row.status,
            row.stdout_bytes,
            row.seconds,
            if over { "**" } else { "" },
            row.peak_mib,
            if over { "**" } else { "" },
            row.after,
            row.message.replace('|', "\\|")
        );
    }
    println!(
        "\nbar: every peak RSS <= {BAR_MIB} MiB: {}",
        if met { "met" } else { "NOT met" }
    );
    Ok(met)
}

fn main() -> BoxResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("measure") {
        return measure_child(&args[1..]);
    }
    if !driver(&args)? {
        std::process::exit(1);
    }
    Ok(())
}
