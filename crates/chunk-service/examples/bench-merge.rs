//! `cargo xtask bench merge`: list + download-and-merge of a whole recording from the fs backend
//! — median wall time, MB/s of merged PCM and peak RSS — against `cat` of the same object files.
//!
//! The recording: the speech fixture (`tests/fixtures/speech/speech-60s.wav`, 60 s of 16 kHz
//! mono PCM16) looped, cut into 5 s chunks (160 000 bytes, timestamps 5 s apart) and written as
//! batches of 12 (one object per 60 s): 720 chunks / 60 objects per hour. Each layout below is
//! measured at 1 h and 4 h:
//!
//! - `batch-bin`: Omi's `FIRST-LAST.batch.bin` (raw PCM, a `standard` user);
//! - `batch-enc`: Omi's `FIRST-LAST.batch.enc` (one AES-GCM frame per chunk, `enhanced`);
//! - `pack`: chunkvault's `START-END.pack` (zstd), the default layout for new data, `standard`;
//! - `pack-sealed`: the same pack sealed for an `enhanced` user.
//!
//! **Setup** writes each data set once into `target/bench-merge/LAYOUT-Hh/` (reused while its
//! manifest matches). **Measure** runs in a fresh child process per (layout, duration,
//! repetition) — this executable re-run with `measure` — so the peak RSS it reports (`VmHWM`
//! of `/proc/self/status`, read at the end) belongs to one download alone. The child builds a
//! service over `fs://…`, times `list` plus `download` of the whole range, consumes the stream
//! piece by piece (CRC-32C and byte count, checked against the data set; never collected) and
//! prints one `result` line. By default the child runs a current-thread tokio runtime (OpenDAL's
//! fs backend still reads on tokio's blocking threads) with the service's default configuration
//! and glibc's default allocator settings, as a deployment would; `--arena-max 2` sets
//! `MALLOC_ARENA_MAX=2` in the child (glibc's documented arena limit) for comparison.
//!
//! Each figure is the median of `--runs` runs (default 5), with the page cache warm (after one
//! unmeasured run) and, when the process may write `/proc/sys/vm/drop_caches` (root), cold.
//! The baseline is `cat FILES… > /dev/null` of the same objects, timed the same ways.
//! Each row also times every object read and decoded one after another by the library
//! (`check_object`, warm): one core's open/decode throughput, which issue 13's time bar for
//! layouts that must be decoded is relative to (merged ≥ 80 % of cores × that rate; plaintext
//! Omi layouts ≤ 1.5× `cat`). The bars are printed, not enforced: times are noisy here.
//!
//! Options: `--hours 1,4`, `--runs N`, `--layouts batch-bin,batch-enc,pack,pack-sealed`,
//! `--data DIR`, `--warm-only`, `--quick` (1 h, 3 runs, warm only); child knobs passed through:
//! `--threads N` (0 = current-thread runtime), `--arena-max N` (0 = glibc default),
//! `--budget-mib N` (`ServiceConfig::download_memory_budget`), `--concurrency N`
//! (`ServiceConfig::download_concurrency`). Exits with status 1 if a peak RSS exceeds 32 MiB.

mod support;

use std::error::Error;
use std::fmt::Write as _;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{cores, default_data_dir, peak_rss_kib, result_field, result_line};

use bytes::Bytes;
use chunk_crypto::{KeyId, Keyring, MasterSecret};
use chunk_format::Timestamp;
use chunk_service::{
    BatchLayout, Chunk, ChunkService, DownloadOptions, DownloadRequest, InMemoryLevels,
    ProtectionLevel, ServiceConfig, UploadOptions,
};
use chunk_store::{ConversationId, Store, UserId};
use futures::StreamExt;

type BoxResult<T> = Result<T, Box<dyn Error>>;

const SAMPLE_RATE: u32 = 16_000;
const CHUNK_SECONDS: u64 = 5;
const CHUNK_BYTES: usize = (SAMPLE_RATE as usize) * 2 * CHUNK_SECONDS as usize;
const CHUNKS_PER_HOUR: u64 = 3_600 / CHUNK_SECONDS;
/// Chunks per uploaded batch (one object per 60 s).
const BATCH: u64 = 12;
const T0_MS: u64 = 1_786_961_845_727;
/// The bar for peak RSS, whatever the duration.
const RSS_BAR_KIB: u64 = 32 * 1024;
/// Bumped when the data set written by setup changes, so stale caches are rewritten.
const DATA_VERSION: u32 = 1;
const USER: &str = "bench-merge-user";

/// The layouts measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    BatchBin,
    BatchEnc,
    Pack,
    PackSealed,
}

impl Layout {
    const ALL: [Layout; 4] = [
        Layout::BatchBin,
        Layout::BatchEnc,
        Layout::Pack,
        Layout::PackSealed,
    ];

    fn key(self) -> &'static str {
        match self {
            Layout::BatchBin => "batch-bin",
            Layout::BatchEnc => "batch-enc",
            Layout::Pack => "pack",
            Layout::PackSealed => "pack-sealed",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Layout::BatchBin => "`.batch.bin`",
            Layout::BatchEnc => "`.batch.enc`",
            Layout::Pack => "`.pack`",
            Layout::PackSealed => "`.pack` sealed",
        }
    }

    fn parse(text: &str) -> BoxResult<Layout> {
        Layout::ALL
            .into_iter()
            .find(|layout| layout.key() == text)
            .ok_or_else(|| format!("unknown layout {text:?}").into())
    }

    /// Whether the layout must be opened or decoded (all but plaintext Omi batches).
    fn decodes(self) -> bool {
        self != Layout::BatchBin
    }

    fn batch_layout(self) -> BatchLayout {
        match self {
            Layout::BatchBin | Layout::BatchEnc => BatchLayout::Omi,
            Layout::Pack | Layout::PackSealed => BatchLayout::Pack,
        }
    }

    fn level(self) -> ProtectionLevel {
        match self {
            Layout::BatchBin | Layout::Pack => ProtectionLevel::Standard,
            Layout::BatchEnc | Layout::PackSealed => ProtectionLevel::Enhanced,
        }
    }
}

/// Settings of the measured child process (default: current-thread runtime, glibc and service
/// defaults).
#[derive(Debug, Clone, Copy, Default)]
struct ChildKnobs {
    /// Tokio worker threads; 0 = current-thread runtime.
    threads: usize,
    /// `MALLOC_ARENA_MAX` for the child; 0 = leave glibc's default.
    arena_max: usize,
    /// `download_memory_budget` in MiB; `None` = the service default.
    budget_mib: Option<usize>,
    /// `download_concurrency`; `None` = the service default.
    concurrency: Option<NonZeroUsize>,
}

impl ChildKnobs {
    fn args(&self) -> Vec<String> {
        let mut args = vec!["--threads".to_owned(), self.threads.to_string()];
        if let Some(mib) = self.budget_mib {
            args.extend(["--budget-mib".to_owned(), mib.to_string()]);
        }
        if let Some(n) = self.concurrency {
            args.extend(["--concurrency".to_owned(), n.to_string()]);
        }
        args
    }

    fn config(&self, layout: Layout) -> ServiceConfig {
        let defaults = ServiceConfig::default();
        ServiceConfig {
            batch_layout: layout.batch_layout(),
            download_memory_budget: self
                .budget_mib
                .map_or(defaults.download_memory_budget, |mib| mib * 1024 * 1024),
            download_concurrency: self.concurrency.unwrap_or(defaults.download_concurrency),
            ..defaults
        }
    }

    fn describe(&self) -> String {
        let runtime = if self.threads == 0 {
            "current-thread tokio runtime".to_owned()
        } else {
            format!("{}-worker tokio runtime", self.threads)
        };
        let arenas = if self.arena_max == 0 {
            "glibc default arenas".to_owned()
        } else {
            format!("MALLOC_ARENA_MAX={}", self.arena_max)
        };
        let config = self.config(Layout::Pack);
        format!(
            "{runtime}, {arenas}, download_concurrency {}, download_memory_budget {} MiB",
            config.download_concurrency,
            config.download_memory_budget / (1024 * 1024)
        )
    }
}

fn timestamp(index: u64) -> BoxResult<Timestamp> {
    Ok(Timestamp::from_millis(T0_MS + index * CHUNK_SECONDS * 1000)
        .ok_or("timestamp out of range")?)
}

fn conversation(hours: u64) -> BoxResult<ConversationId> {
    Ok(ConversationId::new(format!("bench-merge-{hours}h"))?)
}

fn service(root: &Path, layout: Layout, config: ServiceConfig) -> BoxResult<ChunkService> {
    let store = Store::from_uri(&format!("fs://{}", root.display()))?;
    let secret = MasterSecret::new(b"bench-merge-master-secret-0123456789abcdef".to_vec())?;
    let keyring = Keyring::single(KeyId::new(1), secret);
    let levels = Arc::new(InMemoryLevels::new(layout.level()));
    Ok(ChunkService::new(store, Some(keyring), levels, config)?)
}

/// The speech fixture's PCM, a whole number of 5 s chunks.
fn speech() -> BoxResult<Vec<u8>> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/speech/speech-60s.wav");
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let info = chunk_format::wav::parse_wav_pcm16(&bytes)?;
    let pcm = bytes
        .get(info.data_range())
        .ok_or_else(|| format!("{}: WAV data range out of bounds", path.display()))?
        .to_vec();
    if info.spec().sample_rate != SAMPLE_RATE || pcm.is_empty() || pcm.len() % CHUNK_BYTES != 0 {
        return Err(format!(
            "{}: expected 16 kHz mono PCM16 in whole 5 s chunks",
            path.display()
        )
        .into());
    }
    Ok(pcm)
}

/// What setup wrote, as recorded in `manifest.txt`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Manifest {
    layout: Layout,
    hours: u64,
    /// Bytes of PCM a download of everything yields.
    pcm_bytes: u64,
    /// CRC-32C of that PCM.
    crc: u32,
}

impl Manifest {
    fn render(&self) -> String {
        format!(
            "version={DATA_VERSION}\nlayout={}\nhours={}\npcm_bytes={}\ncrc32c={:08x}\n",
            self.layout.key(),
            self.hours,
            self.pcm_bytes,
            self.crc
        )
    }

    fn parse(text: &str) -> Option<Manifest> {
        let field = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        };
        if field("version")?.parse::<u32>().ok()? != DATA_VERSION {
            return None;
        }
        Some(Manifest {
            layout: Layout::parse(field("layout")?).ok()?,
            hours: field("hours")?.parse().ok()?,
            pcm_bytes: field("pcm_bytes")?.parse().ok()?,
            crc: u32::from_str_radix(field("crc32c")?, 16).ok()?,
        })
    }
}

/// One data set on disk: its directory (the manifest, and the fs store under `store/`).
struct DataSet {
    dir: PathBuf,
    manifest: Manifest,
}

impl DataSet {
    fn store_root(&self) -> PathBuf {
        self.dir.join("store")
    }

    /// Every object file, sorted by path.
    fn object_files(&self) -> BoxResult<Vec<PathBuf>> {
        let mut files = Vec::new();
        let mut pending = vec![self.store_root()];
        while let Some(dir) = pending.pop() {
            for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    pending.push(entry.path());
                } else {
                    files.push(entry.path());
                }
            }
        }
        files.sort();
        Ok(files)
    }
}

/// Writes the data set for (`layout`, `hours`) under `base`, unless a matching one is there.
async fn setup(base: &Path, layout: Layout, hours: u64, pcm: &[u8]) -> BoxResult<DataSet> {
    let dir = base.join(format!("{}-{hours}h", layout.key()));
    let manifest_path = dir.join("manifest.txt");
    if let Ok(text) = std::fs::read_to_string(&manifest_path)
        && let Some(manifest) = Manifest::parse(&text)
        && manifest.layout == layout
        && manifest.hours == hours
    {
        return Ok(DataSet { dir, manifest });
    }
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let started = Instant::now();
    let root = dir.join("store");
    std::fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    let config = ServiceConfig {
        batch_layout: layout.batch_layout(),
        ..ServiceConfig::default()
    };
    let service = service(&root, layout, config)?;
    let uid = UserId::new(USER)?;
    let conv = conversation(hours)?;
    let per_loop = (pcm.len() / CHUNK_BYTES) as u64;
    let chunk_bytes = |i: u64| {
        let start = (i % per_loop) as usize * CHUNK_BYTES;
        &pcm[start..start + CHUNK_BYTES]
    };
    let total = hours * CHUNKS_PER_HOUR;
    let mut crc = 0u32;
    let mut first = 0;
    while first < total {
        let last = (first + BATCH).min(total);
        let mut batch = Vec::with_capacity(BATCH as usize);
        for i in first..last {
            let bytes = chunk_bytes(i);
            crc = crc32c::crc32c_append(crc, bytes);
            batch.push(Chunk::new(timestamp(i)?, Bytes::copy_from_slice(bytes)));
        }
        service
            .upload_batch(&uid, &conv, batch, UploadOptions::at_level(layout.level()))
            .await?;
        first = last;
    }
    let manifest = Manifest {
        layout,
        hours,
        pcm_bytes: total * CHUNK_BYTES as u64,
        crc,
    };
    std::fs::write(&manifest_path, manifest.render())
        .map_err(|e| format!("{}: {e}", manifest_path.display()))?;
    eprintln!(
        "bench-merge: wrote {} ({} h) in {:.1} s",
        layout.key(),
        hours,
        started.elapsed().as_secs_f64()
    );
    Ok(DataSet { dir, manifest })
}

/// What one measured child reported.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Wall time of list + download + consuming the stream.
    elapsed: Duration,
    /// Of which the `list` call.
    list: Duration,
    /// Objects listed and their total size.
    objects: u64,
    object_bytes: u64,
    /// `VmHWM` at the end, KiB.
    hwm_kib: u64,
    /// `VmHWM` after the listing, before the download starts, KiB.
    base_kib: u64,
}

/// The child: one download, timed, checked, with its peak RSS.
fn measure_child(args: &[String]) -> BoxResult<()> {
    let mut dir = None;
    let mut layout = None;
    let mut hours = None;
    let mut knobs = ChildKnobs::default();
    let mut decode_only = false;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--dir" => dir = Some(PathBuf::from(value)),
            "--layout" => layout = Some(Layout::parse(value)?),
            "--hours" => hours = Some(value.parse::<u64>()?),
            "--threads" => knobs.threads = value.parse()?,
            "--budget-mib" => knobs.budget_mib = Some(value.parse()?),
            "--concurrency" => knobs.concurrency = Some(value.parse()?),
            "--decode-only" => decode_only = value == "1",
            other => return Err(format!("measure: unknown option {other}").into()),
        }
    }
    let (Some(dir), Some(layout), Some(hours)) = (dir, layout, hours) else {
        return Err("measure needs --dir, --layout and --hours".into());
    };
    let manifest_path = dir.join("manifest.txt");
    let manifest = Manifest::parse(&std::fs::read_to_string(&manifest_path)?)
        .ok_or_else(|| format!("{}: unreadable manifest", manifest_path.display()))?;
    let runtime = if knobs.threads == 0 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(knobs.threads)
            .enable_all()
            .build()?
    };
    let service = service(&dir.join("store"), layout, knobs.config(layout))?;
    let uid = UserId::new(USER)?;
    let conv = conversation(hours)?;
    let (sample, bytes, crc) = runtime.block_on(async {
        let started = Instant::now();
        let listing = service.list(&uid, &conv).await?;
        let list = started.elapsed();
        let base_kib = peak_rss_kib()?;
        let sample = |elapsed| Sample {
            elapsed,
            list,
            objects: listing.chunks.len() as u64,
            object_bytes: listing.chunks.iter().map(|entry| entry.size).sum(),
            hwm_kib: 0,
            base_kib,
        };
        if decode_only {
            // One core's open/decode throughput: every object read and decoded by the
            // library's own decoder, one after another.
            let mut bytes = 0;
            for entry in &listing.chunks {
                let check = service
                    .check_object(&uid, &conv, &entry.path, &entry.name, entry.size)
                    .await?;
                bytes += check.pcm_bytes;
            }
            return Ok::<_, Box<dyn Error>>((sample(started.elapsed()), bytes, None));
        }
        let request = DownloadRequest::Range {
            from: timestamp(0)?,
            to: timestamp(hours * CHUNKS_PER_HOUR)?,
        };
        let mut stream = service
            .download(&uid, &conv, &request, DownloadOptions::default())
            .await?;
        let (mut bytes, mut crc) = (0u64, 0u32);
        while let Some(piece) = stream.next().await {
            let piece = piece?;
            crc = crc32c::crc32c_append(crc, &piece);
            bytes += piece.len() as u64;
        }
        Ok::<_, Box<dyn Error>>((sample(started.elapsed()), bytes, Some(crc)))
    })?;
    if bytes != manifest.pcm_bytes || crc.is_some_and(|crc| crc != manifest.crc) {
        return Err(format!(
            "{}: merged {bytes} bytes with CRC-32C {crc:08x?}; expected {} bytes, {:08x}",
            dir.display(),
            manifest.pcm_bytes,
            manifest.crc
        )
        .into());
    }
    let hwm_kib = peak_rss_kib()?;
    println!(
        "result elapsed_ns={} list_ns={} objects={} object_bytes={} hwm_kib={hwm_kib} base_kib={}",
        sample.elapsed.as_nanos(),
        sample.list.as_nanos(),
        sample.objects,
        sample.object_bytes,
        sample.base_kib,
    );
    Ok(())
}

fn parse_sample(stdout: &str) -> BoxResult<Sample> {
    let line = result_line(stdout)?;
    let field = |key: &str| result_field(line, key);
    Ok(Sample {
        elapsed: Duration::from_nanos(field("elapsed_ns")?),
        list: Duration::from_nanos(field("list_ns")?),
        objects: field("objects")?,
        object_bytes: field("object_bytes")?,
        hwm_kib: field("hwm_kib")?,
        base_kib: field("base_kib")?,
    })
}

/// Runs one measured child: a download, or with `decode_only` every object decoded one after
/// another.
fn run_child(set: &DataSet, knobs: &ChildKnobs, decode_only: bool) -> BoxResult<Sample> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    command
        .arg("measure")
        .arg("--dir")
        .arg(&set.dir)
        .args(["--layout", set.manifest.layout.key()])
        .args(["--hours", &set.manifest.hours.to_string()])
        .args(knobs.args())
        .args(["--decode-only", if decode_only { "1" } else { "0" }])
        .stdin(Stdio::null());
    if knobs.arena_max == 0 {
        command.env_remove("MALLOC_ARENA_MAX");
    } else {
        command.env("MALLOC_ARENA_MAX", knobs.arena_max.to_string());
    }
    let output = command.output()?;
    if !output.status.success() {
        return Err(format!(
            "measure {} {} h failed ({}): {}",
            set.manifest.layout.key(),
            set.manifest.hours,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    parse_sample(&String::from_utf8_lossy(&output.stdout))
}

/// Times `cat FILES > /dev/null`.
fn run_cat(files: &[PathBuf]) -> BoxResult<Duration> {
    let started = Instant::now();
    let status = Command::new("cat")
        .args(files)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()?;
    let elapsed = started.elapsed();
    if !status.success() {
        return Err(format!("cat failed: {status}").into());
    }
    Ok(elapsed)
}

/// Flushes and drops the page cache; false if this process may not.
fn drop_caches() -> bool {
    let synced = Command::new("sync").status().is_ok_and(|s| s.success());
    synced && std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Medians of one (layout, duration) row.
struct Row {
    layout: Layout,
    hours: u64,
    objects: u64,
    object_bytes: u64,
    pcm_bytes: u64,
    merge_warm: f64,
    list_warm: f64,
    /// Every object read and decoded one after another (one core), warm.
    decode_warm: f64,
    merge_cold: Option<f64>,
    cat_warm: f64,
    cat_cold: Option<f64>,
    hwm_median_kib: f64,
    hwm_max_kib: u64,
    /// Median `VmHWM` before the download started (runtime, service, listing), KiB.
    base_median_kib: f64,
}

fn measure_row(set: &DataSet, runs: usize, cold: bool, knobs: &ChildKnobs) -> BoxResult<Row> {
    let files = set.object_files()?;
    // One unmeasured run: warms the page cache and checks the merge end to end.
    let first = run_child(set, knobs, false)?;
    let mut warm = Vec::new();
    for _ in 0..runs {
        warm.push(run_child(set, knobs, false)?);
    }
    let mut decode_warm = Vec::new();
    for _ in 0..runs {
        decode_warm.push(run_child(set, knobs, true)?.elapsed.as_secs_f64());
    }
    let mut cat_warm = Vec::new();
    run_cat(&files)?;
    for _ in 0..runs {
        cat_warm.push(run_cat(&files)?.as_secs_f64());
    }
    let (mut cold_samples, mut cat_cold) = (Vec::new(), Vec::new());
    if cold {
        for _ in 0..runs {
            if !drop_caches() {
                return Err("dropping the page cache failed midway".into());
            }
            cold_samples.push(run_child(set, knobs, false)?);
            if !drop_caches() {
                return Err("dropping the page cache failed midway".into());
            }
            cat_cold.push(run_cat(&files)?.as_secs_f64());
        }
    }
    let all: Vec<&Sample> = std::iter::once(&first)
        .chain(&warm)
        .chain(&cold_samples)
        .collect();
    let mut hwm: Vec<f64> = all.iter().map(|s| s.hwm_kib as f64).collect();
    let mut base: Vec<f64> = all.iter().map(|s| s.base_kib as f64).collect();
    Ok(Row {
        layout: set.manifest.layout,
        hours: set.manifest.hours,
        objects: first.objects,
        object_bytes: first.object_bytes,
        pcm_bytes: set.manifest.pcm_bytes,
        merge_warm: median(
            &mut warm
                .iter()
                .map(|s| s.elapsed.as_secs_f64())
                .collect::<Vec<_>>(),
        ),
        list_warm: median(
            &mut warm
                .iter()
                .map(|s| s.list.as_secs_f64())
                .collect::<Vec<_>>(),
        ),
        merge_cold: cold.then(|| {
            median(
                &mut cold_samples
                    .iter()
                    .map(|s| s.elapsed.as_secs_f64())
                    .collect::<Vec<_>>(),
            )
        }),
        cat_warm: median(&mut cat_warm),
        decode_warm: median(&mut decode_warm),
        cat_cold: cold.then(|| median(&mut cat_cold)),
        hwm_median_kib: median(&mut hwm),
        hwm_max_kib: all.iter().map(|s| s.hwm_kib).max().unwrap_or(0),
        base_median_kib: median(&mut base),
    })
}

impl Row {
    /// Merged throughput as a share of `cores` × one core's decode throughput.
    fn parallel_share(&self, cores: usize) -> f64 {
        self.decode_warm / self.merge_warm / cores as f64
    }

    /// Issue 13's time bar for this row, and whether it holds: plaintext Omi layouts within
    /// 1.5× `cat`; layouts that must be opened or decoded at ≥ 80 % of `cores` × one core's
    /// decode throughput.
    fn time_bar(&self, cores: usize) -> (String, bool) {
        if self.layout.decodes() {
            let share = self.parallel_share(cores);
            (
                format!(
                    "{:.0} % of {cores} × 1-core decode (bar ≥ 80 %)",
                    share * 100.0
                ),
                share >= 0.8,
            )
        } else {
            let ratio = self.merge_warm / self.cat_warm;
            (format!("{ratio:.2}× cat (bar ≤ 1.5×)"), ratio <= 1.5)
        }
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

fn table(rows: &[Row], cold: bool) -> String {
    let cores = cores();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| Layout | Audio | Objects | Object MB | PCM MB | List ms | Merge warm s | MB/s | cat warm s | × cat | 1-core decode s | MB/s | merge / ({cores} × decode) | {}Peak RSS MiB (median / max) | Before download MiB |",
        if cold {
            "Merge cold s | MB/s | cat cold s | × cat | "
        } else {
            ""
        }
    );
    let _ = writeln!(
        out,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|{}---:|---:|",
        if cold { "---:|---:|---:|---:|" } else { "" }
    );
    for row in rows {
        let mut cold_cells = String::new();
        if let (Some(merge), Some(cat)) = (row.merge_cold, row.cat_cold) {
            let _ = write!(
                cold_cells,
                "{merge:.3} | {:.0} | {cat:.3} | {:.1} | ",
                mb(row.pcm_bytes) / merge,
                merge / cat
            );
        }
        let _ = writeln!(
            out,
            "| {} | {} h | {} | {:.1} | {:.1} | {:.1} | {:.3} | {:.0} | {:.3} | {:.1} | {:.3} | {:.0} | {:.2} | {cold_cells}{:.1} / {:.1} | {:.1} |",
            row.layout.label(),
            row.hours,
            row.objects,
            mb(row.object_bytes),
            mb(row.pcm_bytes),
            row.list_warm * 1e3,
            row.merge_warm,
            mb(row.pcm_bytes) / row.merge_warm,
            row.cat_warm,
            row.merge_warm / row.cat_warm,
            row.decode_warm,
            mb(row.pcm_bytes) / row.decode_warm,
            row.parallel_share(cores),
            row.hwm_median_kib / 1024.0,
            row.hwm_max_kib as f64 / 1024.0,
            row.base_median_kib / 1024.0,
        );
    }
    out
}

fn list_arg<T>(value: &str, parse: impl Fn(&str) -> BoxResult<T>) -> BoxResult<Vec<T>> {
    value.split(',').map(|item| parse(item.trim())).collect()
}

fn driver(args: &[String]) -> BoxResult<bool> {
    let mut hours = vec![1u64, 4];
    let mut runs = 5usize;
    let mut layouts = Layout::ALL.to_vec();
    let mut data = default_data_dir("bench-merge");
    let mut warm_only = false;
    let mut knobs = ChildKnobs::default();
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let mut value = || rest.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--quick" => {
                hours = vec![1];
                runs = 3;
                warm_only = true;
            }
            "--warm-only" => warm_only = true,
            "--hours" => hours = list_arg(value()?, |h| Ok(h.parse::<u64>()?))?,
            "--runs" => runs = value()?.parse()?,
            "--layouts" => layouts = list_arg(value()?, Layout::parse)?,
            "--data" => data = PathBuf::from(value()?),
            "--threads" => knobs.threads = value()?.parse()?,
            "--arena-max" => knobs.arena_max = value()?.parse()?,
            "--budget-mib" => knobs.budget_mib = Some(value()?.parse()?),
            "--concurrency" => knobs.concurrency = Some(value()?.parse()?),
            other => return Err(format!("unknown option {other}").into()),
        }
    }
    if runs == 0 || hours.contains(&0) {
        return Err("--runs and --hours must be positive".into());
    }
    let pcm = speech()?;
    let setup_runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut sets = Vec::new();
    for &h in &hours {
        for &layout in &layouts {
            sets.push(setup_runtime.block_on(setup(&data, layout, h, &pcm))?);
        }
    }
    drop(setup_runtime);
    let cold = !warm_only && drop_caches();
    if !warm_only && !cold {
        eprintln!("bench-merge: cannot drop the page cache (not root?); warm cache only");
    }
    let started = Instant::now();
    let mut rows = Vec::new();
    for set in &sets {
        let row = measure_row(set, runs, cold, &knobs)?;
        eprintln!(
            "bench-merge: {} {} h: merge {:.3} s, cat {:.3} s, peak RSS {:.1} MiB",
            row.layout.key(),
            row.hours,
            row.merge_warm,
            row.cat_warm,
            row.hwm_max_kib as f64 / 1024.0
        );
        rows.push(row);
    }
    println!(
        "\nbench-merge: list + download of everything, fs backend ({}), median of {runs} runs; child: {}; data in {}; measured in {:.0} s\n",
        if cold {
            "warm and cold page cache"
        } else {
            "warm page cache"
        },
        knobs.describe(),
        data.display(),
        started.elapsed().as_secs_f64()
    );
    print!("{}", table(&rows, cold));
    let cores = cores();
    println!("\nTime bars (warm):");
    let mut times_met = true;
    for row in &rows {
        let (what, met) = row.time_bar(cores);
        times_met &= met;
        println!(
            "- {} {} h: {what}: {}",
            row.layout.label(),
            row.hours,
            if met { "met" } else { "NOT met" }
        );
    }
    println!(
        "Time bars: {} (reported only: times on a shared machine are noisy; compare ratios from one run)",
        if times_met { "all met" } else { "not all met" }
    );
    let worst = rows.iter().map(|row| row.hwm_max_kib).max().unwrap_or(0);
    let met = worst <= RSS_BAR_KIB;
    println!(
        "\nPeak RSS bar (≤ 32 MiB whatever the duration): {} (worst {:.1} MiB)",
        if met { "met" } else { "NOT met" },
        worst as f64 / 1024.0
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
