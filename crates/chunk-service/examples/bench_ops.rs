//! `cargo xtask bench ops`: object-store operations per recorded hour, per write strategy.
//!
//! Records one hour of audio — 720 chunks of 5 s of 16 kHz PCM16 mono (160 000 bytes each),
//! timestamps advancing 5 s per chunk, the speech fixture looped — for one user, against the memory backend, with each
//! strategy below, and reports what chunk-store's operation-counting layer saw (the same counts
//! a real bucket would bill):
//!
//! 1. **per-chunk** — `upload_chunk` for every chunk: one `TS.bin` object each (Omi phase 1);
//! 2. **Omi 60 s** — the recorder with [`RecorderConfig::omi`] and [`BatchLayout::Omi`]:
//!    `FIRST-LAST.batch.bin` objects of 60 s, held in memory (a crash loses up to a batch);
//! 3. **pack 60 s** — the same recorder writing packs ([`BatchLayout::Pack`]);
//! 4. **pack + spool 600 s** — [`RecorderConfig::spool`]: 10-minute packs, every chunk
//!    fsync'd to a local spool before it is acknowledged.
//!
//! `cargo xtask bench ops -- URI` runs against another store (a fresh user id per run, so
//! create-only writes never find an earlier run's objects); on S3 the counts include multipart
//! requests. On the memory backend, which writes every object in one request, the table adds
//! an estimate of the S3 Class A requests: an object written through the streaming writer is
//! one PUT up to 5 MiB (S3's smallest multipart part) and `parts + 2` requests (initiate, parts,
//! complete) above it.
//!
//! The flush logic runs on audio duration, so no real time passes. After each run the hour is
//! downloaded and compared byte for byte with what was pushed (the check's own reads are not
//! counted). Monthly cost: one user recording 24 h a day for 30 days, at AWS S3 Standard
//! request prices (us-east-1, published): $0.005 per 1 000 PUT, COPY, POST or LIST requests
//! (Class A), $0.0004 per 1 000 GET and other requests (Class B). Storage and transfer are
//! not included. Exits with status 1 if the spool preset needs more than 6 PUTs per hour.

use std::error::Error;
use std::sync::Arc;

use bytes::Bytes;
use chunk_format::Timestamp;
use chunk_service::{
    BatchLayout, Chunk, ChunkService, DownloadOptions, DownloadRequest, EncryptionPolicy,
    InMemoryLevels, ProtectionLevel, Recorder, RecorderConfig, ServiceConfig, UploadOptions,
};
use chunk_store::{ConversationId, OpCounts, Store, UserId};

/// Where the prices come from.
const PRICE_SOURCE: &str = "AWS S3 Standard, us-east-1 published prices";
/// Dollars per 1 000 Class A requests (PUT, COPY, POST, LIST).
const CLASS_A_USD_PER_1000: f64 = 0.005;
/// Dollars per 1 000 Class B requests (GET and all other requests).
const CLASS_B_USD_PER_1000: f64 = 0.0004;
/// Recorded hours per month: 24 h a day for 30 days.
const HOURS_PER_MONTH: f64 = 24.0 * 30.0;

const SAMPLE_RATE: u32 = 16_000;
const CHUNK_SECONDS: u64 = 5;
const CHUNK_BYTES: usize = (SAMPLE_RATE as usize) * 2 * CHUNK_SECONDS as usize;
/// One recorded hour of 5 s chunks.
const CHUNKS_PER_HOUR: u64 = 3_600 / CHUNK_SECONDS;
const T0_MS: u64 = 1_786_961_845_727;
/// The bar for the spool preset.
const MAX_SPOOL_PUTS_PER_HOUR: u64 = 6;
/// S3's smallest multipart part, the size above which a streamed object becomes a multipart
/// upload.
const S3_PART_BYTES: u64 = 5 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
enum Strategy {
    PerChunk,
    Omi60,
    Pack60,
    PackSpool600,
}

impl Strategy {
    const ALL: [Strategy; 4] = [
        Strategy::PerChunk,
        Strategy::Omi60,
        Strategy::Pack60,
        Strategy::PackSpool600,
    ];

    fn label(self) -> &'static str {
        match self {
            Strategy::PerChunk => "per-chunk (Omi phase 1)",
            Strategy::Omi60 => "Omi batches, 60 s (memory)",
            Strategy::Pack60 => "pack, 60 s (memory)",
            Strategy::PackSpool600 => "pack + spool, 600 s",
        }
    }

    fn layout(self) -> BatchLayout {
        match self {
            Strategy::PerChunk | Strategy::Omi60 => BatchLayout::Omi,
            Strategy::Pack60 | Strategy::PackSpool600 => BatchLayout::Pack,
        }
    }
}

struct Row {
    strategy: Strategy,
    /// Sizes of the objects written.
    sizes: Vec<u64>,
    ops: OpCounts,
}

impl Row {
    /// Class A requests S3 would bill for the same objects written by the streaming writer.
    fn s3_class_a_estimate(&self) -> u64 {
        let writes: u64 = self
            .sizes
            .iter()
            .map(|&size| {
                if size <= S3_PART_BYTES {
                    1
                } else {
                    size.div_ceil(S3_PART_BYTES) + 2
                }
            })
            .sum();
        writes + self.ops.list + self.ops.copy
    }

    fn class_a_usd_month(&self) -> f64 {
        self.ops.class_a() as f64 * HOURS_PER_MONTH * CLASS_A_USD_PER_1000 / 1000.0
    }

    fn class_b_usd_month(&self) -> f64 {
        self.ops.class_b() as f64 * HOURS_PER_MONTH * CLASS_B_USD_PER_1000 / 1000.0
    }
}

fn timestamp(index: u64) -> Result<Timestamp, Box<dyn Error>> {
    Ok(Timestamp::from_millis(T0_MS + index * CHUNK_SECONDS * 1000)
        .ok_or("timestamp out of range")?)
}

/// The recording: the speech fixture (`tests/fixtures/speech/speech-60s.wav`, 60 s of
/// espeak-ng speech, 16 kHz mono PCM16) looped for an hour, cut into 5 s chunks.
struct Speech {
    pcm: Vec<u8>,
}

impl Speech {
    fn load() -> Result<Speech, Box<dyn Error>> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/speech/speech-60s.wav");
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let info = chunk_format::wav::parse_wav_pcm16(&bytes)?;
        let pcm = bytes
            .get(info.data_range())
            .ok_or("WAV data range out of bounds")?
            .to_vec();
        if info.spec().sample_rate != SAMPLE_RATE || pcm.len() % CHUNK_BYTES != 0 || pcm.is_empty()
        {
            return Err(format!(
                "{}: expected 16 kHz mono PCM16 in whole 5 s chunks",
                path.display()
            )
            .into());
        }
        Ok(Speech { pcm })
    }

    /// Chunk `index` of the hour.
    fn chunk(&self, index: u64) -> Bytes {
        let per_loop = (self.pcm.len() / CHUNK_BYTES) as u64;
        let start = (index % per_loop) as usize * CHUNK_BYTES;
        Bytes::copy_from_slice(&self.pcm[start..start + CHUNK_BYTES])
    }
}

async fn record_hour(
    speech: &Speech,
    strategy: Strategy,
    uri: &str,
    run: &str,
) -> Result<Row, Box<dyn Error>> {
    let store = Store::from_uri(uri)?;
    let config = ServiceConfig {
        batch_layout: strategy.layout(),
        encryption: EncryptionPolicy::Disabled,
        ..ServiceConfig::default()
    };
    let levels = Arc::new(InMemoryLevels::new(ProtectionLevel::Standard));
    let service = ChunkService::new(store.clone(), None, levels, config)?;
    let uid = UserId::new(format!("bench-ops-{run}"))?;
    let conv = ConversationId::new("bench-hour")?;
    let level = Some(ProtectionLevel::Standard);
    let spool = tempfile::tempdir()?;

    store.reset_op_counts();
    match strategy {
        Strategy::PerChunk => {
            for i in 0..CHUNKS_PER_HOUR {
                service
                    .upload_chunk(
                        &uid,
                        &conv,
                        Chunk::new(timestamp(i)?, speech.chunk(i)),
                        UploadOptions::with_level(level),
                    )
                    .await?;
            }
        }
        Strategy::Omi60 | Strategy::Pack60 | Strategy::PackSpool600 => {
            let config = match strategy {
                Strategy::PackSpool600 => RecorderConfig::spool(spool.path()),
                _ => RecorderConfig::omi(),
            };
            let (recorder, _) = Recorder::open(service.clone(), config).await?;
            for i in 0..CHUNKS_PER_HOUR {
                recorder
                    .push(&uid, &conv, timestamp(i)?, speech.chunk(i), level)
                    .await?;
            }
            recorder.close().await?;
            let stats = recorder.stats().await;
            if stats.chunks_acked != CHUNKS_PER_HOUR || stats.held_batches != 0 {
                return Err(format!("{}: recorder stats {stats:?}", strategy.label()).into());
            }
        }
    }
    let ops = store.op_counts();

    // Zero loss: the hour reads back byte for byte.
    let listing = service.list(&uid, &conv).await?;
    let request = DownloadRequest::Range {
        from: timestamp(0)?,
        to: timestamp(CHUNKS_PER_HOUR)?,
    };
    let options = DownloadOptions {
        fill_gaps: false,
        sample_rate: SAMPLE_RATE,
        ..DownloadOptions::default()
    };
    let audio = service
        .download(&uid, &conv, &request, options)
        .await?
        .collect_vec()
        .await?;
    let expected: Vec<u8> = (0..CHUNKS_PER_HOUR)
        .flat_map(|i| speech.chunk(i).to_vec())
        .collect();
    if audio != expected {
        return Err(format!(
            "{}: the hour read back differs ({} bytes, expected {})",
            strategy.label(),
            audio.len(),
            expected.len()
        )
        .into());
    }
    Ok(Row {
        strategy,
        sizes: listing.chunks.iter().map(|entry| entry.size).collect(),
        ops,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let uri = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "memory://".to_owned());
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let speech = Speech::load()?;
    let mut rows = Vec::new();
    for strategy in Strategy::ALL {
        rows.push(record_hour(&speech, strategy, &uri, &format!("{run}-{strategy:?}")).await?);
    }
    let estimate = Store::from_uri(&uri)?.multipart_min_size().is_none();

    println!(
        "Operations per recorded hour: {CHUNKS_PER_HOUR} chunks of {CHUNK_SECONDS} s, {SAMPLE_RATE} Hz PCM16 mono (speech fixture looped), one user, store {uri}, counted by chunk-store's CountingLayer; every hour read back byte-identical."
    );
    println!(
        "Cost per month: one user recording 24 h/day for 30 days; {PRICE_SOURCE}: ${CLASS_A_USD_PER_1000} per 1,000 Class A (PUT/COPY/POST/LIST), ${CLASS_B_USD_PER_1000} per 1,000 Class B (GET/HEAD); storage and transfer not included."
    );
    println!();
    let mut header = "| Strategy | Objects | Avg object | PUTs/hour | Class A/hour | Class B/hour | Class A $/month | Class B $/month | Total $/month |".to_owned();
    let mut rule = "|---|---:|---:|---:|---:|---:|---:|---:|---:|".to_owned();
    if estimate {
        header.push_str(" S3 Class A/hour (est.) | S3 total $/month (est.) |");
        rule.push_str("---:|---:|");
    }
    println!("{header}");
    println!("{rule}");
    for row in &rows {
        let objects = row.sizes.len();
        let average = row.sizes.iter().sum::<u64>() / (objects.max(1) as u64);
        let mut line = format!(
            "| {} | {} | {:.2} MB | {} | {} | {} | {:.4} | {:.4} | {:.4} |",
            row.strategy.label(),
            objects,
            average as f64 / 1e6,
            row.ops.write,
            row.ops.class_a(),
            row.ops.class_b(),
            row.class_a_usd_month(),
            row.class_b_usd_month(),
            row.class_a_usd_month() + row.class_b_usd_month(),
        );
        if estimate {
            let s3_a = row.s3_class_a_estimate();
            let s3_usd = s3_a as f64 * HOURS_PER_MONTH * CLASS_A_USD_PER_1000 / 1000.0
                + row.class_b_usd_month();
            line.push_str(&format!(" {s3_a} | {s3_usd:.4} |"));
        }
        println!("{line}");
    }
    println!();
    for row in &rows {
        println!("{}: {}", row.strategy.label(), row.ops);
    }

    let spool = rows
        .iter()
        .find(|r| matches!(r.strategy, Strategy::PackSpool600))
        .ok_or("no spool row")?;
    if spool.ops.write > MAX_SPOOL_PUTS_PER_HOUR {
        eprintln!(
            "bench-ops: the spool preset made {} PUTs per recorded hour; the bar is {MAX_SPOOL_PUTS_PER_HOUR}",
            spool.ops.write
        );
        std::process::exit(1);
    }
    println!(
        "\nbar: the spool preset makes {} PUTs per recorded hour (≤ {MAX_SPOOL_PUTS_PER_HOUR}): met",
        spool.ops.write
    );
    if estimate && spool.s3_class_a_estimate() > MAX_SPOOL_PUTS_PER_HOUR {
        println!(
            "note: on S3 the streaming writer splits the spool preset's objects (> 5 MiB) into multipart uploads: ≈ {} Class A requests per recorded hour; one single PUT per batch would keep it at {}",
            spool.s3_class_a_estimate(),
            spool.ops.write
        );
    }
    Ok(())
}
