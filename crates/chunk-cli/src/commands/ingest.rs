//! `ingest`: store an audio file as chunks of one conversation, through the recorder.
//!
//! The file is a PCM16 mono WAV (rate from its header) or raw PCM16LE mono `.pcm` with
//! `--sample-rate`; it is read into memory whole. It is cut into `--chunk-secs` chunks (the
//! last may be shorter) stamped `start + i × chunk`, pushed through the recorder, which groups
//! them into `--batch-secs` objects and uploads them; the command ends when every batch is
//! stored.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, anyhow, bail};
use bytes::Bytes;
use chunk_format::Timestamp;
use chunk_format::wav::parse_wav_pcm16;
use chunk_service::{ProtectionLevel, Recorder, RecorderConfig, StreamLimits};
use serde_json::json;

use crate::cli::{IngestArgs, LayoutArg, LevelArg};
use crate::context::{self, Context};
use crate::{output, progress};

/// PCM16 mono audio read from a file.
#[derive(Debug)]
pub(crate) struct Audio {
    /// PCM16LE mono samples.
    pub(crate) pcm: Bytes,
    /// Samples per second.
    pub(crate) sample_rate: u32,
}

/// Reads `path` as a PCM16 mono WAV or a raw `.pcm` file; anything else is an error.
pub(crate) fn read_audio(path: &Path, sample_rate: Option<u32>) -> Result<Audio> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.starts_with(b"RIFF") {
        let info = parse_wav_pcm16(&bytes)
            .with_context(|| format!("{} is not a PCM16 WAV file", path.display()))?;
        if info.channels != 1 {
            bail!(
                "{} has {} channels; only mono PCM16 audio can be ingested",
                path.display(),
                info.channels
            );
        }
        if let Some(rate) = sample_rate.filter(|&rate| rate != info.sample_rate) {
            bail!(
                "--sample-rate {rate} contradicts the WAV header of {} ({} Hz)",
                path.display(),
                info.sample_rate
            );
        }
        let data = bytes
            .get(info.data_range())
            .ok_or_else(|| anyhow!("{}: WAV data range out of bounds", path.display()))?;
        let even = data.len() - data.len() % 2;
        return Ok(Audio {
            pcm: Bytes::copy_from_slice(&data[..even]),
            sample_rate: info.sample_rate,
        });
    }
    let is_pcm = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("pcm"));
    if !is_pcm {
        bail!(
            "{} is neither a WAV file (no RIFF header) nor a raw .pcm file; give a PCM16 mono \
             WAV, or raw PCM16LE mono named *.pcm with --sample-rate",
            path.display()
        );
    }
    let Some(sample_rate) = sample_rate else {
        bail!(
            "{} is raw PCM: give its rate with --sample-rate (e.g. 16000)",
            path.display()
        );
    };
    if bytes.len() % 2 == 1 {
        bail!(
            "{} has an odd number of bytes ({}); raw PCM16 has two per sample",
            path.display(),
            bytes.len()
        );
    }
    Ok(Audio {
        pcm: Bytes::from(bytes),
        sample_rate,
    })
}

/// The service's level for a `--level` value.
pub(crate) fn level(level: LevelArg) -> ProtectionLevel {
    match level {
        LevelArg::Standard => ProtectionLevel::Standard,
        LevelArg::Enhanced => ProtectionLevel::Enhanced,
        LevelArg::E2ee => ProtectionLevel::E2ee,
    }
}

/// A recorder configuration that flushes a batch every `batch_secs` of audio and never by age
/// (the whole file is pushed at once), in memory (the file itself is the durable copy).
pub(crate) fn recorder_config(
    sample_rate: u32,
    chunk_bytes: usize,
    batch_secs: u32,
) -> RecorderConfig {
    let batch_bytes = (batch_secs as usize)
        .saturating_mul(sample_rate as usize)
        .saturating_mul(2);
    RecorderConfig {
        max_batch_duration: Duration::from_secs(u64::from(batch_secs)),
        max_batch_chunks: usize::MAX,
        max_batch_bytes: batch_bytes.saturating_add(chunk_bytes),
        max_age: Duration::from_secs(24 * 3600),
        sample_rate,
        limits: StreamLimits {
            max_streams: 1,
            stream_bytes: batch_bytes
                .saturating_add(chunk_bytes)
                .saturating_mul(2)
                .max(64 * 1024 * 1024),
            total_bytes: None,
        },
        spool_dir: None,
        ..RecorderConfig::omi()
    }
}

/// Now, to the millisecond.
pub(crate) fn now() -> Result<Timestamp> {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?
        .as_millis();
    u64::try_from(ms)
        .ok()
        .and_then(Timestamp::from_millis)
        .ok_or_else(|| anyhow!("the system clock is out of range"))
}

/// Runs `ingest`.
pub(crate) async fn run(ctx: &Context, args: &IngestArgs) -> Result<()> {
    let uid = context::user(&args.target.uid)?;
    let conversation = context::conversation(&args.target.conversation)?;
    let audio = read_audio(&args.file, args.sample_rate)?;
    if audio.pcm.is_empty() {
        bail!("{} holds no audio", args.file.display());
    }
    let level = level(args.level);
    let rate = audio.sample_rate;
    let service = ctx.service(args.layout, level, rate)?;
    let chunk_bytes = (args.chunk_secs as usize) * (rate as usize) * 2;
    let duration_ms = (audio.pcm.len() as u64 / 2) * 1000 / u64::from(rate);
    let start = match args.start {
        Some(start) => start,
        None => {
            let now = now()?;
            Timestamp::from_millis(now.as_millis().saturating_sub(duration_ms)).unwrap_or(now)
        }
    };
    let chunk_ms = u64::from(args.chunk_secs) * 1000;
    let chunks: Vec<(Timestamp, Bytes)> = (0..)
        .zip((0..audio.pcm.len()).step_by(chunk_bytes))
        .map(|(i, at)| {
            let ts = Timestamp::from_millis(start.as_millis() + i * chunk_ms)
                .ok_or_else(|| anyhow!("chunk {i} would start after the largest timestamp"))?;
            Ok((
                ts,
                audio.pcm.slice(at..(at + chunk_bytes).min(audio.pcm.len())),
            ))
        })
        .collect::<Result<_>>()?;

    let started = Instant::now();
    let writes_before = ctx.store.op_counts().write;
    let (recorder, _) = Recorder::open(
        service.clone(),
        recorder_config(rate, chunk_bytes, args.batch_secs),
    )
    .await?;
    let bar = progress::bar(ctx.progress(), chunks.len() as u64, "ingesting");
    for (ts, pcm) in &chunks {
        recorder
            .push(&uid, &conversation, *ts, pcm.clone(), Some(level))
            .await
            .with_context(|| format!("recording the chunk at {ts}"))?;
        bar.inc(1);
    }
    recorder
        .close()
        .await
        .context("uploading the last batches")?;
    bar.finish_and_clear();
    let stats = recorder.stats().await;
    let objects: u64 = stats.flushes.values().map(|f| f.batches).sum();
    let writes = ctx.store.op_counts().write.saturating_sub(writes_before);
    let elapsed = started.elapsed();
    let end = chunks.last().map_or(start, |(ts, pcm)| {
        ts.saturating_add_millis(pcm.len() as u64 / 2 * 1000 / u64::from(rate))
    });
    if ctx.json {
        return output::print_json(&json!({
            "uid": uid.as_str(),
            "conversation": conversation.as_str(),
            "start": start.as_f64(),
            "end": end.as_f64(),
            "sample_rate": rate,
            "level": level.as_str(),
            "layout": match args.layout { LayoutArg::Omi => "omi", LayoutArg::Pack => "pack" },
            "chunks": chunks.len(),
            "objects": objects,
            "write_operations": writes,
            "pcm_bytes": audio.pcm.len(),
            "seconds": elapsed.as_secs_f64(),
        }));
    }
    outln!(
        "ingested {} ({} chunks of {} s, {} Hz, level {}) into conversation {} of user {}",
        output::duration(Duration::from_millis(duration_ms)),
        chunks.len(),
        args.chunk_secs,
        rate,
        level,
        conversation,
        uid
    )?;
    outln!(
        "{start} .. {end}: {objects} object(s), {writes} write operation(s) (one object per \
         chunk: {}), {}",
        chunks.len(),
        output::duration(elapsed)
    )?;
    Ok(())
}
