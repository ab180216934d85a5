//! `cargo xtask bench many-chunks`: list + download of one pack holding very many tiny chunks —
//! a regression check for the pack read path, which was once quadratic in the chunk count (a
//! PCM pack of 400 000 one-sample chunks took 80 s to export).
//!
//! **Setup** (in this process) writes, for each chunk count N, one plain PCM pack
//! (`Codec::Pcm16Le`, 16 kHz mono, a `standard` user, no key ring) into a temporary `fs://`
//! store with a single `upload_batch` of N chunks: chunk i is one sample (2 bytes) at
//! `T0 + i` ms. **Measure** runs in a fresh child process per repetition — this executable
//! re-run with `measure` — so the peak RSS it reports (`VmHWM` of `/proc/self/status`) belongs
//! to one download alone. The child (current-thread tokio runtime) times `list` plus
//! `download` of the whole range with `fill_gaps`, consumes the stream piece by piece (byte
//! count and non-zero bytes, checked against the data; never collected) and prints one
//! `result` line.
//!
//! Options: `--chunks 400000,1000000`, `--runs N` (default 3). Exits with status 1 if the
//! median at 400 000 chunks is 2 s or more.

mod support;

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;
use support::peak_rss_kib;

use bytes::Bytes;
use chunk_format::Timestamp;
use chunk_format::pack::{Codec, PackConfig};
use chunk_service::{
    BatchLayout, Chunk, ChunkService, DownloadOptions, DownloadRequest, EncryptionPolicy,
    InMemoryLevels, ProtectionLevel, ServiceConfig, UploadOptions,
};
use chunk_store::{ConversationId, Store, UserId};
use futures::StreamExt;

type BoxResult<T> = Result<T, Box<dyn Error>>;

const SAMPLE_RATE: u32 = 16_000;
const T0_MS: u64 = 1_786_961_845_727;
const USER: &str = "bench-many-chunks-user";
const CONVERSATION: &str = "bench-many-chunks";
/// The bar: a download of this many chunks must take less than `BAR_SECONDS` (median).
const BAR_CHUNKS: u64 = 400_000;
const BAR_SECONDS: f64 = 2.0;

fn timestamp(ms_after_t0: u64) -> BoxResult<Timestamp> {
    Ok(Timestamp::from_millis(T0_MS + ms_after_t0).ok_or("timestamp out of range")?)
}

/// The one sample of chunk `i`: both bytes non-zero, so the output's non-zero bytes count the
/// chunks' audio (silence is all zeros).
fn sample(i: u64) -> [u8; 2] {
    [1 + (i % 255) as u8, 0x40]
}

fn service(root: &Path) -> BoxResult<ChunkService> {
    let store = Store::from_uri(&format!("fs://{}", root.display()))?;
    let config = ServiceConfig {
        batch_layout: BatchLayout::Pack,
        pack: PackConfig::new(Codec::Pcm16Le, SAMPLE_RATE, 1),
        encryption: EncryptionPolicy::Disabled,
        ..ServiceConfig::default()
    };
    let levels = Arc::new(InMemoryLevels::new(ProtectionLevel::Standard));
    Ok(ChunkService::new(store, None, levels, config)?)
}

/// Output bytes of a `fill_gaps` range download from T0 of `n` one-sample chunks: positions
/// are whole samples, `ms * rate / 1000` rounded down; each gap up to the next chunk's start
/// is silence, and nothing follows the last chunk.
fn expected_bytes(n: u64) -> u64 {
    let mut cursor = 0u64;
    for i in 0..n {
        let start = i * u64::from(SAMPLE_RATE) / 1000;
        cursor = cursor.max(start) + 1;
    }
    cursor * 2
}

/// Writes one pack of `n` chunks under `root`; returns the pack's size in bytes.
async fn setup(root: &Path, n: u64) -> BoxResult<u64> {
    let service = service(root)?;
    let (uid, conv) = (UserId::new(USER)?, ConversationId::new(CONVERSATION)?);
    let chunks = (0..n)
        .map(|i| {
            Ok(Chunk::new(
                timestamp(i)?,
                Bytes::copy_from_slice(&sample(i)),
            ))
        })
        .collect::<BoxResult<Vec<Chunk>>>()?;
    let report = service
        .upload_batch(
            &uid,
            &conv,
            chunks,
            UploadOptions::at_level(ProtectionLevel::Standard),
        )
        .await
        .map_err(|e| format!("upload_batch of {n} one-sample chunks was refused: {e}"))?;
    let listing = service.list(&uid, &conv).await?;
    if report.paths.len() != 1 || listing.chunks.len() != 1 {
        return Err(format!(
            "expected one pack, got paths {:?} and {} listed objects",
            report.paths,
            listing.chunks.len()
        )
        .into());
    }
    Ok(listing.chunks.iter().map(|entry| entry.size).sum())
}

/// The child: one list + download, timed, checked, with its peak RSS.
fn measure_child(args: &[String]) -> BoxResult<()> {
    let [dir, n] = args else {
        return Err("usage: measure DIR CHUNKS".into());
    };
    let (root, n) = (PathBuf::from(dir), n.parse::<u64>()?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let service = service(&root)?;
    let (uid, conv) = (UserId::new(USER)?, ConversationId::new(CONVERSATION)?);
    let (elapsed, bytes, nonzero) = runtime.block_on(async {
        let started = Instant::now();
        service.list(&uid, &conv).await?;
        let request = DownloadRequest::Range {
            from: timestamp(0)?,
            to: timestamp(n)?,
        };
        let options = DownloadOptions {
            fill_gaps: true,
            sample_rate: SAMPLE_RATE,
            ..DownloadOptions::default()
        };
        let mut stream = service.download(&uid, &conv, &request, options).await?;
        let (mut bytes, mut nonzero) = (0u64, 0u64);
        while let Some(piece) = stream.next().await {
            let piece = piece?;
            bytes += piece.len() as u64;
            nonzero += piece.iter().filter(|&&b| b != 0).count() as u64;
        }
        Ok::<_, Box<dyn Error>>((started.elapsed(), bytes, nonzero))
    })?;
    let expected = expected_bytes(n);
    if bytes != expected || nonzero != 2 * n {
        return Err(format!(
            "{n} chunks: downloaded {bytes} bytes ({nonzero} non-zero); expected {expected} ({})",
            2 * n
        )
        .into());
    }
    println!(
        "result elapsed_ns={} bytes={bytes} hwm_kib={}",
        elapsed.as_nanos(),
        peak_rss_kib()?
    );
    Ok(())
}

/// Runs one measured child; returns (seconds, peak RSS KiB).
fn run_child(root: &Path, n: u64) -> BoxResult<(f64, u64)> {
    let output = Command::new(std::env::current_exe()?)
        .arg("measure")
        .arg(root)
        .arg(n.to_string())
        .stdin(Stdio::null())
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "measure {n} chunks failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix("result "))
        .ok_or_else(|| format!("child printed no result: {stdout:?}"))?;
    let field = |key: &str| -> BoxResult<u64> {
        Ok(line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .ok_or_else(|| format!("no {key} in {line:?}"))?
            .parse()?)
    };
    Ok((field("elapsed_ns")? as f64 / 1e9, field("hwm_kib")?))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn driver(args: &[String]) -> BoxResult<bool> {
    let mut counts = vec![400_000u64, 1_000_000];
    let mut runs = 3usize;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let mut value = || rest.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--chunks" => {
                counts = value()?
                    .split(',')
                    .map(|n| n.trim().parse::<u64>())
                    .collect::<Result<_, _>>()?;
            }
            "--runs" => runs = value()?.parse()?,
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    if runs == 0 || counts.contains(&0) {
        return Err("--runs and --chunks must be positive".into());
    }
    let setup_runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!(
        "bench-many-chunks: list + download (fill_gaps) of one PCM pack of N one-sample chunks \
         1 ms apart, fs backend, warm page cache, {runs} runs, one child process per run"
    );
    let mut met = true;
    for &n in &counts {
        let dir = tempfile::tempdir()?;
        let started = Instant::now();
        let pack_bytes = setup_runtime.block_on(setup(dir.path(), n))?;
        eprintln!(
            "bench-many-chunks: wrote {n} chunks in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        let (mut seconds, mut peak_kib) = (Vec::new(), 0u64);
        for _ in 0..runs {
            let (s, kib) = run_child(dir.path(), n)?;
            seconds.push(s);
            peak_kib = peak_kib.max(kib);
        }
        let med = median(&mut seconds);
        println!(
            "chunks {n}: pack {pack_bytes} B, output {} B, median {med:.3} s (min {:.3}, max {:.3}), \
             {:.0} chunks/s, peak RSS {:.1} MiB (max of runs)",
            expected_bytes(n),
            seconds[0],
            seconds[seconds.len() - 1],
            n as f64 / med,
            peak_kib as f64 / 1024.0
        );
        if n == BAR_CHUNKS {
            met &= med < BAR_SECONDS;
        }
    }
    if counts.contains(&BAR_CHUNKS) {
        println!(
            "bar: {BAR_CHUNKS} chunks < {BAR_SECONDS} s: {}",
            if met { "met" } else { "NOT met" }
        );
    }
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
