//! `cargo xtask bench ingest`: the live recorder under load (issue 14) — N concurrent streams
//! pushing 5 s chunks, as fast as they are acknowledged or at real-time pace, per mode,
//! protection level and store.
//!
//! **Load.** Each stream is its own user with one conversation and one tokio task. It pushes
//! chunks of the speech fixture (`tests/fixtures/speech/speech-60s.wav`, 60 s of 16 kHz mono
//! PCM16, looped; stream `s` starts at chunk `s mod 12` of the loop) cut into 5 s chunks of
//! 160 000 bytes; chunk `i` is stamped `T0 + 5 i` s. **Paces**: `virtual` pushes chunk `i` as
//! soon as the push of chunk `i - 1` returned, without sleeping (the node's capacity: every
//! stream always has a push waiting, so a push waits about `streams / pushes per second` by
//! construction); `realtime` pushes chunk `i` of stream `s` at `start + 5 s × s / N + 5 i` s,
//! as live streams do (latency, and whether the node keeps up: a push that starts a whole
//! chunk behind its schedule means it does not). `--batch-seconds S` sets the batch duration
//! (age limit `S + 60` s) instead of the preset's, so batches are uploaded while streams push
//! rather than all at `close`. Each push hands the recorder a fresh
//! copy of its chunk, as a server that received it from the network would. A push refused with
//! [`RecorderError::Backpressure`] is counted, retried by its stream after a 10 ms sleep, and
//! not counted as acknowledged; any other error fails the row. Every stream pushes
//! `--seconds S` of audio (default 60), then, once every stream is done, the recorder is
//! `close`d. One [`Recorder`] carries all streams over one [`ChunkService`] with the default
//! layout (packs, [`BatchLayout::Pack`]) and a key ring (`enhanced` users are sealed).
//!
//! **Modes**: `memory` is [`RecorderConfig::omi`] (60 s batches held in memory, no spool);
//! `spool` is [`RecorderConfig::spool`] (10-minute batches, every chunk in the durable local
//! spool before its ack) with the spool in a fresh directory under the row's data directory.
//! **Levels**: `standard` (plain packs) and `enhanced` (sealed packs). **Stores**: `fs`, a
//! fresh directory `target/bench-ingest/ROW/` per row, removed after the row; with `--s3` also
//! the S3 server named by `CHUNKVAULT_TEST_S3_URI` (exported by `cargo xtask s3`, with
//! `create_only=stat` for Garage unless the URI sets a mode), a fresh root per row, every
//! user purged after the row; skipped with a message when the variable is unset.
//!
//! **Measure.** Each row runs in a fresh child process — this executable re-run with
//! `measure` — on a multi-thread tokio runtime with the default worker count (one per core),
//! so the peak RSS it reports (`VmHWM` of `/proc/self/status`) belongs to that row alone. The
//! timed part runs from spawning the streams to the end of `close` (open and setup are not
//! timed; the table also shows how much of it `close` took, which uploads every batch still
//! pending). Per row:
//!
//! - **audio s per wall s**: acknowledged audio of all streams / wall time — the real-time
//!   streams the node sustains;
//! - **audio s per CPU s**: the same over the child's user + system CPU time in the timed part
//!   (`utime + stime` of `/proc/self/stat`, in clock ticks of 10 ms) — the streams one core
//!   carries;
//! - **push p50 / p99**: over every chunk, from its first push call to the call that
//!   acknowledged it (backpressure retries and their sleeps included; nearest rank);
//! - **max lag** (real-time pace): the latest any push started after its scheduled time;
//! - **peak RSS per stream**: the child's `VmHWM` at the end of `close` / streams, KiB
//!   (runtime, fixture and everything else included);
//! - **fsyncs per second**: [`RecorderStats::spool_syncs`] / wall seconds;
//! - **Class A per stream-hour**: write + list + copy requests counted by chunk-store's
//!   `CountingLayer` (the store's `OpCounter`, reset after `Recorder::open`) in the timed part,
//!   / (streams × acknowledged audio hours per stream). `close` flushes each stream's partial
//!   batch, so with `--seconds S` below the spool preset's 600 s batches the figure is at least
//!   3600 / S by construction; the spool bar of 6 needs `--seconds 600` (or a multiple);
//! - **backpressure refusals**: pushes refused with `Backpressure`, summed over streams.
//!
//! **Check** (after the timed part, not timed): the recorder's stats must count every
//! acknowledged chunk and hold no batch; then for every stream the conversation is listed
//! (`ChunkService::list`, at least one object) and its whole range downloaded
//! (`ChunkService::download`, no gap filling) and the byte count and CRC-32C of the PCM must
//! equal what the stream had acknowledged. A mismatch fails the child, and the bench exits with
//! status 1 after the remaining rows.
//!
//! Issue 14's bars are printed next to the figures as MET / NOT MET, not enforced (times are
//! noisy here): spool, `enhanced`, fs — audio s per wall s ≥ 4000 at 4000 streams (virtual
//! pace) and a max lag under one chunk at 4000 streams (real-time pace: ≥ 4000 sustained
//! real-time streams), push p99 ≤ 50 ms at 1000 streams (real-time pace), peak RSS ≤ 256 KiB
//! per stream, fsyncs ≤ 200 /s; memory mode on fs — push p99 ≤ 10 ms (real-time pace); spool
//! preset — Class A ≤ 6 per stream-hour.
//!
//! Options: `--streams 100,1000,4000`, `--seconds 60` (a multiple of 5), `--batch-seconds S`,
//! `--levels standard,enhanced`, `--modes memory,spool`, `--paces virtual,realtime`, `--s3`,
//! `--data DIR` (default
//! `target/bench-ingest`), `--json` (one JSON object per row after the table), `--quick`
//! (100 streams, 30 s, `enhanced`, both modes, virtual pace).

mod support;

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use support::{cores, cpu_model, default_data_dir, peak_rss_kib, result_field, result_line};

use bytes::Bytes;
use chunk_crypto::{KeyId, Keyring, MasterSecret};
use chunk_format::Timestamp;
use chunk_service::{
    BatchLayout, ChunkService, DownloadOptions, DownloadRequest, InMemoryLevels, ProtectionLevel,
    Recorder, RecorderConfig, RecorderError, RecorderStats, ServiceConfig,
};
use chunk_store::{ConversationId, Store, UserId};
use futures::StreamExt;

type BoxResult<T> = Result<T, Box<dyn Error>>;

const SAMPLE_RATE: u32 = 16_000;
const CHUNK_SECONDS: u64 = 5;
const CHUNK_BYTES: usize = (SAMPLE_RATE as usize) * 2 * CHUNK_SECONDS as usize;
const T0_MS: u64 = 1_786_961_845_727;
const CONVERSATION: &str = "bench-ingest";
/// How long a stream sleeps before it retries a push refused with backpressure.
const BACKPRESSURE_SLEEP: Duration = Duration::from_millis(10);
/// Streams checked (listed and downloaded) at once after the timed part.
const CHECK_CONCURRENCY: usize = 16;
/// Clock ticks per second of `/proc/self/stat` (the kernel's `USER_HZ`, 100 on Linux).
const USER_HZ: u64 = 100;
/// The S3 server's URI, as `cargo xtask s3` exports it.
const S3_URI_VAR: &str = "CHUNKVAULT_TEST_S3_URI";

/// Issue 14's bars.
const BAR_SUSTAINED_STREAMS: f64 = 4000.0;
const BAR_SPOOL_P99_STREAMS: usize = 1000;
const BAR_SPOOL_P99_MS: f64 = 50.0;
const BAR_MEMORY_P99_MS: f64 = 10.0;
const BAR_RSS_KIB_PER_STREAM: f64 = 256.0;
const BAR_FSYNCS_PER_SECOND: f64 = 200.0;
const BAR_CLASS_A_PER_STREAM_HOUR: f64 = 6.0;

/// How the recorder holds batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// [`RecorderConfig::omi`]: in memory, no spool.
    Memory,
    /// [`RecorderConfig::spool`]: the durable local spool.
    Spool,
}

impl Mode {
    const ALL: [Mode; 2] = [Mode::Memory, Mode::Spool];

    fn key(self) -> &'static str {
        match self {
            Mode::Memory => "memory",
            Mode::Spool => "spool",
        }
    }

    fn parse(text: &str) -> BoxResult<Mode> {
        Mode::ALL
            .into_iter()
            .find(|mode| mode.key() == text)
            .ok_or_else(|| format!("unknown mode {text:?} (expected memory or spool)").into())
    }

    fn config(self, spool_dir: &Path, batch_seconds: Option<u64>) -> RecorderConfig {
        let preset = match self {
            Mode::Memory => RecorderConfig::omi(),
            Mode::Spool => RecorderConfig::spool(spool_dir),
        };
        match batch_seconds {
            None => preset,
            Some(seconds) => RecorderConfig {
                max_batch_duration: Duration::from_secs(seconds),
                max_age: Duration::from_secs(seconds + 60),
                ..preset
            },
        }
    }
}

/// When each stream pushes its next chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pace {
    /// As soon as the previous push returned: the recorder's capacity.
    Virtual,
    /// Every 5 s of wall time, as a live stream does, the streams' starts spread over the
    /// first 5 s: latency and whether the node keeps up.
    RealTime,
}

impl Pace {
    const ALL: [Pace; 2] = [Pace::Virtual, Pace::RealTime];

    fn key(self) -> &'static str {
        match self {
            Pace::Virtual => "virtual",
            Pace::RealTime => "realtime",
        }
    }

    fn parse(text: &str) -> BoxResult<Pace> {
        Pace::ALL
            .into_iter()
            .find(|pace| pace.key() == text)
            .ok_or_else(|| format!("unknown pace {text:?} (expected virtual or realtime)").into())
    }
}

/// Where the objects go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Fs,
    S3,
}

impl StoreKind {
    fn key(self) -> &'static str {
        match self {
            StoreKind::Fs => "fs",
            StoreKind::S3 => "s3",
        }
    }

    fn parse(text: &str) -> BoxResult<StoreKind> {
        match text {
            "fs" => Ok(StoreKind::Fs),
            "s3" => Ok(StoreKind::S3),
            other => Err(format!("unknown store {other:?}").into()),
        }
    }
}

fn parse_level(text: &str) -> BoxResult<ProtectionLevel> {
    match text.parse::<ProtectionLevel>()? {
        level @ (ProtectionLevel::Standard | ProtectionLevel::Enhanced) => Ok(level),
        other => Err(format!("level {other} is not measured (standard or enhanced)").into()),
    }
}

fn timestamp(index: u64) -> BoxResult<Timestamp> {
    Ok(Timestamp::from_millis(T0_MS + index * CHUNK_SECONDS * 1000)
        .ok_or("timestamp out of range")?)
}

/// The speech fixture's PCM, a whole number of 5 s chunks.
struct Speech {
    pcm: Vec<u8>,
}

impl Speech {
    fn load() -> BoxResult<Speech> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/speech/speech-60s.wav");
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let info = chunk_format::wav::parse_wav_pcm16(&bytes)?;
        let pcm = bytes
            .get(info.data_range())
            .ok_or_else(|| format!("{}: WAV data range out of bounds", path.display()))?
            .to_vec();
        if info.spec().sample_rate != SAMPLE_RATE || pcm.is_empty() || pcm.len() % CHUNK_BYTES != 0
        {
            return Err(format!(
                "{}: expected 16 kHz mono PCM16 in whole 5 s chunks",
                path.display()
            )
            .into());
        }
        Ok(Speech { pcm })
    }

    /// Chunks in one loop of the fixture.
    fn per_loop(&self) -> u64 {
        (self.pcm.len() / CHUNK_BYTES) as u64
    }

    /// Chunk `index` of the looped fixture.
    fn slice(&self, index: u64) -> &[u8] {
        let start = (index % self.per_loop()) as usize * CHUNK_BYTES;
        &self.pcm[start..start + CHUNK_BYTES]
    }

    /// Byte count and CRC-32C of `chunks` chunks starting at chunk `first`.
    fn digest(&self, first: u64, chunks: u64) -> (u64, u32) {
        let crc =
            (first..first + chunks).fold(0u32, |crc, i| crc32c::crc32c_append(crc, self.slice(i)));
        (chunks * CHUNK_BYTES as u64, crc)
    }
}

/// One row of the sweep.
#[derive(Debug, Clone, Copy)]
struct RowSpec {
    pace: Pace,
    mode: Mode,
    level: ProtectionLevel,
    store: StoreKind,
    streams: usize,
    seconds: u64,
    /// Batch duration (and age limit) overriding the preset's, if set.
    batch_seconds: Option<u64>,
}

impl RowSpec {
    fn label(&self) -> String {
        format!(
            "{} {} {} {} {} streams × {} s",
            self.pace.key(),
            self.mode.key(),
            self.level,
            self.store.key(),
            self.streams,
            self.seconds
        )
    }

    fn chunks_per_stream(&self) -> u64 {
        self.seconds / CHUNK_SECONDS
    }

    /// Whether issue 14's spool bars apply (spool mode, `enhanced`, fs).
    fn spool_bars(&self) -> bool {
        self.mode == Mode::Spool
            && self.level == ProtectionLevel::Enhanced
            && self.store == StoreKind::Fs
    }
}

/// What one measured child reported.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    /// Wall time from spawning the streams to the end of `close`.
    wall_ns: u64,
    /// Of which `close` (after the last stream's last ack).
    close_ns: u64,
    /// User + system CPU time of the child in that time.
    cpu_ns: u64,
    /// Chunks acknowledged, all streams.
    chunks: u64,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
    /// Real-time pace: the latest any push started after its scheduled time.
    lag_max_us: u64,
    /// `VmHWM` at the end of `close`, KiB.
    hwm_kib: u64,
    /// `VmHWM` before the streams started, KiB.
    base_kib: u64,
    spool_syncs: u64,
    class_a: u64,
    write: u64,
    list: u64,
    copy: u64,
    /// Pushes refused with backpressure, as the streams saw them.
    refusals: u64,
    /// The same, as the recorder counted them.
    recorder_backpressure: u64,
    /// Objects listed over all streams by the check.
    objects: u64,
    /// Wall time of the check (list + download of every stream).
    check_ns: u64,
}

impl Sample {
    const FIELDS: [&'static str; 19] = [
        "wall_ns",
        "close_ns",
        "cpu_ns",
        "chunks",
        "p50_us",
        "p99_us",
        "max_us",
        "lag_max_us",
        "hwm_kib",
        "base_kib",
        "spool_syncs",
        "class_a",
        "write",
        "list",
        "copy",
        "refusals",
        "recorder_backpressure",
        "objects",
        "check_ns",
    ];

    fn values(&self) -> [u64; 19] {
        [
            self.wall_ns,
            self.close_ns,
            self.cpu_ns,
            self.chunks,
            self.p50_us,
            self.p99_us,
            self.max_us,
            self.lag_max_us,
            self.hwm_kib,
            self.base_kib,
            self.spool_syncs,
            self.class_a,
            self.write,
            self.list,
            self.copy,
            self.refusals,
            self.recorder_backpressure,
            self.objects,
            self.check_ns,
        ]
    }

    fn render(&self) -> String {
        let mut line = "result".to_owned();
        for (key, value) in Sample::FIELDS.iter().zip(self.values()) {
            let _ = write!(line, " {key}={value}");
        }
        line
    }

    fn parse(stdout: &str) -> BoxResult<Sample> {
        let line = result_line(stdout)?;
        let field = |key: &str| result_field(line, key);
        Ok(Sample {
            wall_ns: field("wall_ns")?,
            close_ns: field("close_ns")?,
            cpu_ns: field("cpu_ns")?,
            chunks: field("chunks")?,
            p50_us: field("p50_us")?,
            p99_us: field("p99_us")?,
            max_us: field("max_us")?,
            lag_max_us: field("lag_max_us")?,
            hwm_kib: field("hwm_kib")?,
            base_kib: field("base_kib")?,
            spool_syncs: field("spool_syncs")?,
            class_a: field("class_a")?,
            write: field("write")?,
            list: field("list")?,
            copy: field("copy")?,
            refusals: field("refusals")?,
            recorder_backpressure: field("recorder_backpressure")?,
            objects: field("objects")?,
            check_ns: field("check_ns")?,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The measured child.
// ---------------------------------------------------------------------------------------------

/// User + system CPU time of this process (all its threads, exited ones included), from
/// `utime` and `stime` of `/proc/self/stat`.
fn cpu_time() -> BoxResult<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which may hold spaces, but ends at the last ')'): state
    // is field 3, utime field 14, stime field 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or("unreadable /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| -> BoxResult<u64> {
        Ok(fields
            .get(index)
            .ok_or("short /proc/self/stat")?
            .parse::<u64>()?)
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_nanos(total * (1_000_000_000 / USER_HZ)))
}

fn service(store: Store, level: ProtectionLevel) -> BoxResult<ChunkService> {
    let secret = MasterSecret::new(b"bench-ingest-master-secret-0123456789abcdef".to_vec())?;
    let keyring = Keyring::single(KeyId::new(1), secret);
    let levels = Arc::new(InMemoryLevels::new(level));
    let config = ServiceConfig {
        batch_layout: BatchLayout::Pack,
        ..ServiceConfig::default()
    };
    Ok(ChunkService::new(store, Some(keyring), levels, config)?)
}

fn user(stream: usize) -> BoxResult<UserId> {
    Ok(UserId::new(format!("bench-ingest-{stream:05}"))?)
}

/// What one stream did.
struct StreamOutcome {
    stream: usize,
    uid: UserId,
    /// Chunks acknowledged (chunks `first..first + acked` of the looped fixture).
    acked: u64,
    /// The fixture chunk it started at.
    first: u64,
    refusals: u64,
    /// Per acknowledged chunk, microseconds from its first push call to its ack.
    latencies_us: Vec<u32>,
    /// Real-time pace: the latest a push started after its scheduled time.
    lag_max_us: u64,
}

/// One stream: pushes `chunks` chunks, each as soon as the previous one was acknowledged, or
/// (with a `schedule` of start and offset) chunk `i` at `start + offset + 5 i` s.
#[allow(clippy::too_many_arguments)]
async fn run_stream(
    recorder: Recorder,
    speech: Arc<Speech>,
    stream: usize,
    uid: UserId,
    conversation: ConversationId,
    level: ProtectionLevel,
    chunks: u64,
    schedule: Option<(Instant, Duration)>,
) -> Result<StreamOutcome, String> {
    let first = stream as u64 % speech.per_loop();
    let mut outcome = StreamOutcome {
        stream,
        uid,
        acked: 0,
        first,
        refusals: 0,
        latencies_us: Vec::with_capacity(chunks as usize),
        lag_max_us: 0,
    };
    for i in 0..chunks {
        let at = timestamp(i).map_err(|e| e.to_string())?;
        // A fresh buffer per chunk, as if it had just arrived from the network.
        let pcm = Bytes::copy_from_slice(speech.slice(first + i));
        if let Some((start, offset)) = schedule {
            let due = start + offset + Duration::from_secs(CHUNK_SECONDS * i);
            tokio::time::sleep_until(due.into()).await;
            let lag = Instant::now().saturating_duration_since(due).as_micros();
            outcome.lag_max_us = outcome
                .lag_max_us
                .max(u64::try_from(lag).unwrap_or(u64::MAX));
        }
        let started = Instant::now();
        loop {
            match recorder
                .push(&outcome.uid, &conversation, at, pcm.clone(), Some(level))
                .await
            {
                Ok(_) => break,
                Err(RecorderError::Backpressure { .. }) => {
                    outcome.refusals += 1;
                    tokio::time::sleep(BACKPRESSURE_SLEEP).await;
                }
                Err(e) => return Err(format!("stream {stream}, chunk {i}: {e}")),
            }
        }
        let micros = started.elapsed().as_micros();
        outcome
            .latencies_us
            .push(u32::try_from(micros).unwrap_or(u32::MAX));
        outcome.acked += 1;
    }
    Ok(outcome)
}

/// Lists and downloads one stream's conversation and compares it with what it acknowledged;
/// returns the objects listed.
async fn check_stream(
    service: &ChunkService,
    speech: &Speech,
    conversation: &ConversationId,
    outcome: &StreamOutcome,
) -> BoxResult<u64> {
    let listing = service.list(&outcome.uid, conversation).await?;
    if listing.chunks.is_empty() {
        return Err(format!(
            "stream {}: {} chunks acknowledged, but the conversation lists no object",
            outcome.stream, outcome.acked
        )
        .into());
    }
    let request = DownloadRequest::Range {
        from: timestamp(0)?,
        to: timestamp(outcome.acked)?,
    };
    let options = DownloadOptions {
        fill_gaps: false,
        sample_rate: SAMPLE_RATE,
        ..DownloadOptions::default()
    };
    let mut pcm = service
        .download(&outcome.uid, conversation, &request, options)
        .await?;
    let (mut bytes, mut crc) = (0u64, 0u32);
    while let Some(piece) = pcm.next().await {
        let piece = piece?;
        crc = crc32c::crc32c_append(crc, &piece);
        bytes += piece.len() as u64;
    }
    let (expected_bytes, expected_crc) = speech.digest(outcome.first, outcome.acked);
    if (bytes, crc) != (expected_bytes, expected_crc) {
        return Err(format!(
            "stream {}: stored {bytes} bytes with CRC-32C {crc:08x}; it acknowledged {} chunks, {expected_bytes} bytes with CRC-32C {expected_crc:08x}",
            outcome.stream, outcome.acked
        )
        .into());
    }
    Ok(listing.chunks.len() as u64)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u32], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    u64::from(sorted[rank - 1])
}

async fn measure(spec: RowSpec, dir: &Path, uri: Option<&str>) -> BoxResult<Sample> {
    let speech = Arc::new(Speech::load()?);
    let uri = match spec.store {
        StoreKind::Fs => {
            let root = dir.join("store");
            std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
            format!("fs://{}", root.display())
        }
        StoreKind::S3 => uri.ok_or("--uri is needed for the s3 store")?.to_owned(),
    };
    let store = Store::from_uri(&uri)?;
    let service = service(store.clone(), spec.level)?;
    let spool = tempfile::Builder::new()
        .prefix("spool-")
        .tempdir_in(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    let (recorder, _) = Recorder::open(
        service.clone(),
        spec.mode.config(spool.path(), spec.batch_seconds),
    )
    .await?;
    let conversation = ConversationId::new(CONVERSATION)?;
    let users = (0..spec.streams).map(user).collect::<BoxResult<Vec<_>>>()?;
    let chunks = spec.chunks_per_stream();
    let base_kib = peak_rss_kib()?;

    // The timed part: every stream pushes its audio, then the recorder closes.
    store.reset_op_counts();
    let cpu_before = cpu_time()?;
    let started = Instant::now();
    let tasks: Vec<_> = users
        .into_iter()
        .enumerate()
        .map(|(stream, uid)| {
            let schedule = (spec.pace == Pace::RealTime).then(|| {
                let spread =
                    Duration::from_secs(CHUNK_SECONDS).mul_f64(stream as f64 / spec.streams as f64);
                (started, spread)
            });
            tokio::spawn(run_stream(
                recorder.clone(),
                speech.clone(),
                stream,
                uid,
                conversation.clone(),
                spec.level,
                chunks,
                schedule,
            ))
        })
        .collect();
    let mut outcomes = Vec::with_capacity(tasks.len());
    for task in tasks {
        outcomes.push(task.await??);
    }
    let pushed = started.elapsed();
    recorder.close().await?;
    let wall = started.elapsed();
    let cpu = cpu_time()?.saturating_sub(cpu_before);
    let ops = store.op_counts();
    let hwm_kib = peak_rss_kib()?;
    let stats: RecorderStats = recorder.stats().await;

    // The check, not timed: every acknowledged chunk is stored, byte for byte.
    let check_started = Instant::now();
    let acked: u64 = outcomes.iter().map(|o| o.acked).sum();
    let refusals: u64 = outcomes.iter().map(|o| o.refusals).sum();
    if stats.chunks_acked != acked || stats.held_batches != 0 || stats.pending_batches != 0 {
        return Err(
            format!("the streams saw {acked} acks; recorder stats after close: {stats:?}").into(),
        );
    }
    let mut objects = 0;
    {
        let mut checks = futures::stream::iter(
            outcomes
                .iter()
                .map(|outcome| check_stream(&service, &speech, &conversation, outcome)),
        )
        .buffer_unordered(CHECK_CONCURRENCY);
        while let Some(listed) = checks.next().await {
            objects += listed?;
        }
    }
    let check = check_started.elapsed();
    if spec.store == StoreKind::S3 {
        // Leave the server as empty as it was (the root is this row's own).
        let mut purges = futures::stream::iter(
            outcomes
                .iter()
                .map(|outcome| service.purge_user(&outcome.uid)),
        )
        .buffer_unordered(CHECK_CONCURRENCY);
        while let Some(purged) = purges.next().await {
            purged?;
        }
    }

    let mut latencies: Vec<u32> = outcomes
        .iter()
        .flat_map(|o| o.latencies_us.iter().copied())
        .collect();
    latencies.sort_unstable();
    Ok(Sample {
        wall_ns: u64::try_from(wall.as_nanos())?,
        close_ns: u64::try_from(wall.saturating_sub(pushed).as_nanos())?,
        cpu_ns: u64::try_from(cpu.as_nanos())?,
        chunks: acked,
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        max_us: latencies.last().map_or(0, |&us| u64::from(us)),
        lag_max_us: outcomes.iter().map(|o| o.lag_max_us).max().unwrap_or(0),
        hwm_kib,
        base_kib,
        spool_syncs: stats.spool_syncs,
        class_a: ops.class_a(),
        write: ops.write,
        list: ops.list,
        copy: ops.copy,
        refusals,
        recorder_backpressure: stats.backpressure,
        objects,
        check_ns: u64::try_from(check.as_nanos())?,
    })
}

fn measure_child(args: &[String]) -> BoxResult<()> {
    let (mut pace, mut mode, mut level, mut store) = (None, None, None, None);
    let (mut streams, mut seconds, mut dir, mut uri) = (None, None, None, None);
    let mut batch_seconds = None;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--pace" => pace = Some(Pace::parse(value)?),
            "--mode" => mode = Some(Mode::parse(value)?),
            "--level" => level = Some(parse_level(value)?),
            "--store" => store = Some(StoreKind::parse(value)?),
            "--streams" => streams = Some(value.parse::<usize>()?),
            "--seconds" => seconds = Some(value.parse::<u64>()?),
            "--batch-seconds" => batch_seconds = Some(value.parse::<u64>()?),
            "--dir" => dir = Some(PathBuf::from(value)),
            "--uri" => uri = Some(value.clone()),
            other => return Err(format!("measure: unknown option {other}").into()),
        }
    }
    let spec = RowSpec {
        pace: pace.ok_or("measure: --pace missing")?,
        mode: mode.ok_or("measure: --mode missing")?,
        level: level.ok_or("measure: --level missing")?,
        store: store.ok_or("measure: --store missing")?,
        streams: streams.ok_or("measure: --streams missing")?,
        seconds: seconds.ok_or("measure: --seconds missing")?,
        batch_seconds,
    };
    let dir = dir.ok_or("measure: --dir missing")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let sample = runtime.block_on(measure(spec, &dir, uri.as_deref()))?;
    println!("{}", sample.render());
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The driver.
// ---------------------------------------------------------------------------------------------

/// One measured row.
struct Row {
    spec: RowSpec,
    sample: Sample,
}

/// One of issue 14's bars, as it applies to one figure of one row.
struct Bar {
    /// What the bar is, as printed (`≥ 4000`).
    text: String,
    met: bool,
}

impl Bar {
    fn new(text: impl Into<String>, met: bool) -> Bar {
        Bar {
            text: text.into(),
            met,
        }
    }

    fn verdict(&self) -> &'static str {
        if self.met { "MET" } else { "NOT MET" }
    }
}

impl Row {
    fn wall(&self) -> f64 {
        self.sample.wall_ns as f64 / 1e9
    }

    fn close(&self) -> f64 {
        self.sample.close_ns as f64 / 1e9
    }

    fn cpu(&self) -> f64 {
        self.sample.cpu_ns as f64 / 1e9
    }

    fn audio_seconds(&self) -> f64 {
        (self.sample.chunks * CHUNK_SECONDS) as f64
    }

    fn per_wall(&self) -> f64 {
        self.audio_seconds() / self.wall()
    }

    fn per_cpu(&self) -> f64 {
        self.audio_seconds() / self.cpu()
    }

    fn p50_ms(&self) -> f64 {
        self.sample.p50_us as f64 / 1e3
    }

    fn p99_ms(&self) -> f64 {
        self.sample.p99_us as f64 / 1e3
    }

    fn rss_per_stream_kib(&self) -> f64 {
        self.sample.hwm_kib as f64 / self.spec.streams as f64
    }

    fn fsyncs_per_second(&self) -> f64 {
        self.sample.spool_syncs as f64 / self.wall()
    }

    /// Class A requests / (streams × audio hours per stream) = per hour of all audio.
    fn class_a_per_stream_hour(&self) -> f64 {
        self.sample.class_a as f64 * 3600.0 / self.audio_seconds()
    }

    fn lag_ms(&self) -> f64 {
        self.sample.lag_max_us as f64 / 1e3
    }

    /// At real-time pace, the node sustains its streams if no push ever starts a whole chunk
    /// late.
    fn bar_lag(&self) -> Option<Bar> {
        (self.spec.pace == Pace::RealTime
            && self.spec.spool_bars()
            && self.spec.streams as f64 >= BAR_SUSTAINED_STREAMS)
            .then(|| {
                Bar::new(
                    format!("< {} ms", CHUNK_SECONDS * 1000),
                    self.lag_ms() < (CHUNK_SECONDS * 1000) as f64,
                )
            })
    }

    fn bar_per_wall(&self) -> Option<Bar> {
        (self.spec.pace == Pace::Virtual
            && self.spec.spool_bars()
            && self.spec.streams as f64 >= BAR_SUSTAINED_STREAMS)
            .then(|| {
                Bar::new(
                    format!("≥ {BAR_SUSTAINED_STREAMS:.0}"),
                    self.per_wall() >= BAR_SUSTAINED_STREAMS,
                )
            })
    }

    /// Latency bars apply at real-time pace: at virtual pace every stream has a push waiting
    /// at all times, so a push waits for about `streams / pushes per second` by construction.
    fn bar_p99(&self) -> Option<Bar> {
        if self.spec.pace != Pace::RealTime {
            None
        } else if self.spec.spool_bars() && self.spec.streams == BAR_SPOOL_P99_STREAMS {
            Some(Bar::new(
                format!("≤ {BAR_SPOOL_P99_MS:.0} ms"),
                self.p99_ms() <= BAR_SPOOL_P99_MS,
            ))
        } else if self.spec.mode == Mode::Memory && self.spec.store == StoreKind::Fs {
            Some(Bar::new(
                format!("≤ {BAR_MEMORY_P99_MS:.0} ms"),
                self.p99_ms() <= BAR_MEMORY_P99_MS,
            ))
        } else {
            None
        }
    }

    fn bar_rss(&self) -> Option<Bar> {
        self.spec.spool_bars().then(|| {
            Bar::new(
                format!("≤ {BAR_RSS_KIB_PER_STREAM:.0}"),
                self.rss_per_stream_kib() <= BAR_RSS_KIB_PER_STREAM,
            )
        })
    }

    fn bar_fsyncs(&self) -> Option<Bar> {
        self.spec.spool_bars().then(|| {
            Bar::new(
                format!("≤ {BAR_FSYNCS_PER_SECOND:.0}"),
                self.fsyncs_per_second() <= BAR_FSYNCS_PER_SECOND,
            )
        })
    }

    fn bar_class_a(&self) -> Option<Bar> {
        (self.spec.mode == Mode::Spool).then(|| {
            Bar::new(
                format!("≤ {BAR_CLASS_A_PER_STREAM_HOUR:.0}"),
                self.class_a_per_stream_hour() <= BAR_CLASS_A_PER_STREAM_HOUR,
            )
        })
    }

    /// Every bar of the row: (JSON name, bar).
    fn bars(&self) -> Vec<(&'static str, Bar)> {
        [
            ("audio_per_wall", self.bar_per_wall()),
            ("lag_max", self.bar_lag()),
            ("push_p99", self.bar_p99()),
            ("rss_per_stream", self.bar_rss()),
            ("fsyncs_per_second", self.bar_fsyncs()),
            ("class_a_per_stream_hour", self.bar_class_a()),
        ]
        .into_iter()
        .filter_map(|(name, bar)| Some((name, bar?)))
        .collect()
    }

    fn json(&self, cpu_model: &str, cores: usize) -> String {
        let s = &self.sample;
        let mut out = format!(
            "{{\"pace\":\"{}\",\"mode\":\"{}\",\"level\":\"{}\",\"store\":\"{}\",\"streams\":{},\"seconds_per_stream\":{},\"batch_seconds\":{},\"cpu\":{},\"cores\":{cores},",
            self.spec.pace.key(),
            self.spec.mode.key(),
            self.spec.level,
            self.spec.store.key(),
            self.spec.streams,
            self.spec.seconds,
            self.spec
                .batch_seconds
                .map_or("null".to_owned(), |s| s.to_string()),
            json_string(cpu_model),
        );
        let _ = write!(
            out,
            "\"chunks\":{},\"audio_s\":{},\"wall_s\":{:.6},\"close_s\":{:.6},\"cpu_s\":{:.3},\"audio_s_per_wall_s\":{:.1},\"audio_s_per_cpu_s\":{:.1},\"push_p50_ms\":{:.3},\"push_p99_ms\":{:.3},\"push_max_ms\":{:.3},\"lag_max_ms\":{:.3},",
            s.chunks,
            self.audio_seconds(),
            self.wall(),
            self.close(),
            self.cpu(),
            self.per_wall(),
            self.per_cpu(),
            self.p50_ms(),
            self.p99_ms(),
            s.max_us as f64 / 1e3,
            self.lag_ms(),
        );
        let _ = write!(
            out,
            "\"peak_rss_kib\":{},\"base_rss_kib\":{},\"peak_rss_kib_per_stream\":{:.1},\"spool_syncs\":{},\"fsyncs_per_s\":{:.1},\"class_a\":{},\"write\":{},\"list\":{},\"copy\":{},\"class_a_per_stream_hour\":{:.2},\"backpressure_refusals\":{},\"recorder_backpressure\":{},\"objects\":{},\"check_s\":{:.3},\"verified\":true,\"bars\":{{",
            s.hwm_kib,
            s.base_kib,
            self.rss_per_stream_kib(),
            s.spool_syncs,
            self.fsyncs_per_second(),
            s.class_a,
            s.write,
            s.list,
            s.copy,
            self.class_a_per_stream_hour(),
            s.refusals,
            s.recorder_backpressure,
            s.objects,
            s.check_ns as f64 / 1e9,
        );
        let bars: Vec<String> = self
            .bars()
            .iter()
            .map(|(name, bar)| {
                format!(
                    "\"{name}\":{{\"bar\":{},\"met\":{}}}",
                    json_string(&bar.text),
                    bar.met
                )
            })
            .collect();
        out.push_str(&bars.join(","));
        out.push_str("}}");
        out
    }
}

/// `text` as a JSON string.
fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A figure with the bar that applies to it, if any.
fn with_bar(figure: String, bar: Option<Bar>) -> String {
    match bar {
        Some(bar) => format!("{figure} ({}: {})", bar.text, bar.verdict()),
        None => figure,
    }
}

/// Milliseconds with three significant digits or so.
fn ms(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2}")
    } else if value < 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| Pace | Mode | Level | Store | Streams | Audio s/stream (batch s) | Wall s | of which close s | CPU s | Audio s per wall s | Audio s per CPU s | Push p50 ms | Push p99 ms | Max lag ms | Peak RSS KiB/stream | fsyncs/s | Class A per stream-hour | Backpressure refusals |"
    );
    let _ = writeln!(
        out,
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            row.spec.pace.key(),
            row.spec.mode.key(),
            row.spec.level,
            row.spec.store.key(),
            row.spec.streams,
            match row.spec.batch_seconds {
                Some(batch) => format!("{} ({batch})", row.spec.seconds),
                None => row.spec.seconds.to_string(),
            },
            row.wall(),
            row.close(),
            row.cpu(),
            with_bar(format!("{:.0}", row.per_wall()), row.bar_per_wall()),
            row.per_cpu(),
            ms(row.p50_ms()),
            with_bar(ms(row.p99_ms()), row.bar_p99()),
            match row.spec.pace {
                Pace::RealTime => with_bar(ms(row.lag_ms()), row.bar_lag()),
                Pace::Virtual => "–".to_owned(),
            },
            with_bar(format!("{:.0}", row.rss_per_stream_kib()), row.bar_rss()),
            with_bar(format!("{:.1}", row.fsyncs_per_second()), row.bar_fsyncs()),
            with_bar(
                format!("{:.1}", row.class_a_per_stream_hour()),
                row.bar_class_a()
            ),
            row.sample.refusals,
        );
    }
    out
}

/// The S3 URI for one row: its own root under the server's bucket, and `create_only=stat`
/// (Garage overwrites despite `If-None-Match: *`) unless the URI picks a mode.
fn s3_row_uri(base: &str, row: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let root = format!("bench-ingest-{row}-{}-{nanos}", std::process::id());
    let (base, query) = base.split_once('?').unwrap_or((base, ""));
    let mut query = query.to_owned();
    let named = query
        .split('&')
        .any(|pair| pair.split_once('=').map_or(pair, |(k, _)| k) == "create_only");
    if !named {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str("create_only=stat");
    }
    format!("{}/{root}?{query}", base.trim_end_matches('/'))
}

/// Runs one row in a child process, in a fresh directory under `data` removed afterwards.
fn run_row(spec: RowSpec, data: &Path, s3_base: Option<&str>, index: usize) -> BoxResult<Row> {
    let name = format!(
        "{index:02}-{}-{}-{}-{}-{}",
        spec.pace.key(),
        spec.mode.key(),
        spec.level,
        spec.store.key(),
        spec.streams
    );
    let dir = data.join(&name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("measure")
        .args(["--pace", spec.pace.key()])
        .args(["--mode", spec.mode.key()])
        .args(["--level", spec.level.as_str()])
        .args(["--store", spec.store.key()])
        .args(["--streams", &spec.streams.to_string()])
        .args(["--seconds", &spec.seconds.to_string()])
        .args(
            spec.batch_seconds
                .map(|s| vec!["--batch-seconds".to_owned(), s.to_string()])
                .unwrap_or_default(),
        )
        .arg("--dir")
        .arg(&dir)
        .stdin(Stdio::null());
    if let (StoreKind::S3, Some(base)) = (spec.store, s3_base) {
        command.args(["--uri", &s3_row_uri(base, &name)]);
    }
    let output = command.output();
    let removed = std::fs::remove_dir_all(&dir);
    let output = output?;
    removed.map_err(|e| format!("{}: {e}", dir.display()))?;
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}): {}",
            spec.label(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )
        .into());
    }
    let sample = Sample::parse(&String::from_utf8_lossy(&output.stdout))?;
    Ok(Row { spec, sample })
}

fn list_arg<T>(value: &str, parse: impl Fn(&str) -> BoxResult<T>) -> BoxResult<Vec<T>> {
    value.split(',').map(|item| parse(item.trim())).collect()
}

fn driver(args: &[String]) -> BoxResult<bool> {
    let mut streams = vec![100usize, 1000, 4000];
    let mut seconds = 60u64;
    let mut batch_seconds = None;
    let mut levels = vec![ProtectionLevel::Standard, ProtectionLevel::Enhanced];
    let mut modes = Mode::ALL.to_vec();
    let mut paces = Pace::ALL.to_vec();
    let mut s3 = false;
    let mut json = false;
    let mut data = default_data_dir("bench-ingest");
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let mut value = || rest.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--quick" => {
                streams = vec![100];
                seconds = 30;
                levels = vec![ProtectionLevel::Enhanced];
                modes = Mode::ALL.to_vec();
                paces = vec![Pace::Virtual];
            }
            "--streams" => streams = list_arg(value()?, |n| Ok(n.parse::<usize>()?))?,
            "--seconds" => seconds = value()?.parse()?,
            "--batch-seconds" => batch_seconds = Some(value()?.parse()?),
            "--levels" => levels = list_arg(value()?, parse_level)?,
            "--modes" => modes = list_arg(value()?, Mode::parse)?,
            "--paces" => paces = list_arg(value()?, Pace::parse)?,
            "--s3" => s3 = true,
            "--json" => json = true,
            "--data" => data = PathBuf::from(value()?),
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    if streams.contains(&0) || seconds == 0 || !seconds.is_multiple_of(CHUNK_SECONDS) {
        return Err("--streams must be positive and --seconds a positive multiple of 5".into());
    }
    Speech::load()?;
    let mut stores = vec![StoreKind::Fs];
    let s3_base = std::env::var(S3_URI_VAR).ok().filter(|uri| !uri.is_empty());
    if s3 {
        if s3_base.is_some() {
            stores.push(StoreKind::S3);
        } else {
            eprintln!(
                "bench-ingest: s3 rows skipped: {S3_URI_VAR} is not set (start Garage with `eval \"$(cargo xtask s3)\"`)"
            );
        }
    }
    std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
    let (model, cores) = (cpu_model(), cores());
    let machine = format!(
        "machine: {model}, {cores} cores; child: multi-thread tokio runtime, {cores} workers"
    );
    eprintln!("bench-ingest: {machine}");

    let started = Instant::now();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut index = 0;
    for &store in &stores {
        for &pace in &paces {
            for &mode in &modes {
                for &level in &levels {
                    for &n in &streams {
                        let spec = RowSpec {
                            pace,
                            mode,
                            level,
                            store,
                            streams: n,
                            seconds,
                            batch_seconds,
                        };
                        index += 1;
                        match run_row(spec, &data, s3_base.as_deref(), index) {
                            Ok(row) => {
                                eprintln!(
                                    "bench-ingest: {}: {:.0} audio s per wall s, {:.0} per CPU s, push p50 {} ms / p99 {} ms, {:.0} KiB per stream, {} refusals; {} chunks verified in {:.1} s",
                                    spec.label(),
                                    row.per_wall(),
                                    row.per_cpu(),
                                    ms(row.p50_ms()),
                                    ms(row.p99_ms()),
                                    row.rss_per_stream_kib(),
                                    row.sample.refusals,
                                    row.sample.chunks,
                                    row.sample.check_ns as f64 / 1e9
                                );
                                rows.push(row);
                            }
                            Err(e) => {
                                eprintln!("bench-ingest: {e}");
                                failures.push(e.to_string());
                            }
                        }
                    }
                }
            }
        }
    }

    println!(
        "\nbench-ingest: N concurrent streams of 5 s chunks (speech fixture), each pushing its next chunk as soon as the last was acknowledged (virtual time), {seconds} s of audio per stream, then close; pack layout; every acknowledged chunk listed, downloaded and compared (bytes and CRC-32C) after close; measured in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    println!("{machine}\n");
    print!("{}", table(&rows));
    println!(
        "\nBars (issue 14; reported, not enforced: times are noisy): spool/enhanced/fs — audio s per wall s ≥ {BAR_SUSTAINED_STREAMS:.0} at ≥ {BAR_SUSTAINED_STREAMS:.0} streams, push p99 ≤ {BAR_SPOOL_P99_MS:.0} ms at {BAR_SPOOL_P99_STREAMS} streams, peak RSS ≤ {BAR_RSS_KIB_PER_STREAM:.0} KiB per stream, fsyncs ≤ {BAR_FSYNCS_PER_SECOND:.0} /s; memory mode on fs — push p99 ≤ {BAR_MEMORY_P99_MS:.0} ms; spool preset — Class A ≤ {BAR_CLASS_A_PER_STREAM_HOUR:.0} per stream-hour."
    );
    if modes.contains(&Mode::Spool) && !seconds.is_multiple_of(600) {
        println!(
            "Note: with {seconds} s per stream, close flushes each stream's partial spool batch (the preset's batches are 600 s), so Class A per stream-hour is at least {:.0} by construction; the Class A bar needs --seconds 600.",
            3600.0 / seconds as f64
        );
    }
    if json {
        println!();
        for row in &rows {
            println!("{}", row.json(&model, cores));
        }
    }
    if !failures.is_empty() {
        println!("\nFailed rows:");
        for failure in &failures {
            println!("- {failure}");
        }
    }
    Ok(failures.is_empty())
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
