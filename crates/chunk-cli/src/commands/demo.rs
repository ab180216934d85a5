//! `demo`: the main job, end to end, on the local store.
//!
//! 1. Synthesizes speech-like audio ([`crate::synth`], deterministic per user) for `--users`
//!    users, `--minutes` each, and records it in 5 s chunks through the recorder into the
//!    store: user 1, 3, … at level `enhanced` (sealed), user 2, 4, … `standard`. Every
//!    conversation is written as packs (10-minute packs through the durable spool) except the
//!    last user's (of two or more), which is written in Omi's layout (60 s batches, as Omi's
//!    pusher does).
//! 2. Lists every conversation.
//! 3. Exports the first user's conversation to WAV.
//! 4. Downloads every chunk's 5 s range and compares it with the audio that was recorded.
//! 5. Prints a summary: chunks, objects, write operations against one object per chunk, bytes
//!    stored against raw PCM, time taken.
//!
//! Every run uses a fresh conversation id (`demo-<unix seconds>`), so reruns never conflict.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use chunk_format::Timestamp;
use chunk_service::{
    ChunkService, DownloadOptions, DownloadRequest, ProtectionLevel, Recorder, RecorderConfig,
    StreamLimits,
};
use chunk_store::{ConversationId, UserId};
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::json;

use crate::cli::{DemoArgs, ExportFormat, LayoutArg};
use crate::commands::export;
use crate::commands::ingest::now;
use crate::context::Context;
use crate::synth::Speech;
use crate::{cost, output, progress};

/// The built-in secret the demo seals `enhanced` audio with when none is given. Public on
/// purpose: it protects nothing but demo audio.
pub(crate) const DEMO_SECRET: &[u8] = b"chunkvault-demo-secret:not-for-real-data:0123456789";

/// Demo audio format: Omi's.
const RATE: u32 = 16_000;
/// Chunk length.
const CHUNK_MS: u64 = 5_000;
/// Bytes per chunk.
const CHUNK_BYTES: usize = (RATE as usize) * 2 * (CHUNK_MS as usize) / 1000;
/// Chunk checks in flight during verification.
const VERIFY_CONCURRENCY: usize = 8;

/// One demo user and what they record.
#[derive(Debug, Clone)]
struct Voice {
    index: u32,
    uid: UserId,
    level: ProtectionLevel,
    layout: LayoutArg,
    start: Timestamp,
    seed: u64,
}

impl Voice {
    fn chunk_start(&self, chunk: u64) -> Timestamp {
        self.start.saturating_add_millis(chunk * CHUNK_MS)
    }

    fn layout_name(&self) -> &'static str {
        match self.layout {
            LayoutArg::Omi => "omi",
            LayoutArg::Pack => "pack",
        }
    }
}

/// Wall-clock time of each step.
#[derive(Debug, Default)]
struct Timings(Vec<(&'static str, Duration)>);

impl Timings {
    fn add(&mut self, step: &'static str, since: Instant) {
        self.0.push((step, since.elapsed()));
    }
}

/// Runs the demo.
pub(crate) async fn run(ctx: &Context, args: &DemoArgs) -> Result<()> {
    let total_started = Instant::now();
    let with_demo_secret;
    let (ctx, secret_note) = if ctx.keyring()?.is_some() {
        (
            ctx,
            "the secret you gave (CHUNKVAULT_SECRET / --secret-file)",
        )
    } else {
        with_demo_secret = ctx.with_secret(DEMO_SECRET)?;
        (
            &with_demo_secret,
            "the built-in demo secret (public; not for real data)",
        )
    };
    let human = !ctx.json;
    let chunks_per_user = u64::from(args.minutes) * 60_000 / CHUNK_MS;
    let now = now()?;
    let conversation = fresh_conversation(ctx, now).await?;
    let voices = voices(args, now, chunks_per_user)?;
    if human {
        outln!(
            "chunkvault demo: {} user(s) × {} min of speech-like audio in {} s chunks, \
             conversation {conversation}, store {}",
            args.users,
            args.minutes,
            CHUNK_MS / 1000,
            ctx.store.uri_display()
        )?;
        outln!("  encryption (level enhanced) uses {secret_note}")?;
        for voice in &voices {
            outln!(
                "  user {}: level {}, layout {}",
                voice.uid,
                voice.level,
                voice.layout_name()
            )?;
        }
    }
    let mut timings = Timings::default();

    // 1. Record.
    let started = Instant::now();
    let before = ctx.store.op_counts();
    let spool = tempfile::Builder::new()
        .prefix("chunkvault-demo-spool-")
        .tempdir()
        .context("creating the demo's spool directory")?;
    let recorded = record(ctx, &voices, &conversation, chunks_per_user, spool.path()).await?;
    let record_ops = ctx.store.op_counts() - before;
    timings.add("record", started);

    // 2. List.
    let started = Instant::now();
    let reader = ctx.reader()?;
    let mut listings = BTreeMap::new();
    for voice in &voices {
        let listing = reader.list(&voice.uid, &conversation).await?;
        listings.insert(voice.index, listing);
    }
    timings.add("list", started);
    let objects: usize = listings.values().map(|l| l.chunks.len()).sum();
    let stored_bytes: u64 = listings
        .values()
        .flat_map(|l| l.chunks.iter().map(|e| e.size))
        .sum();
    if human {
        outln!()?;
        for voice in &voices {
            let Some(listing) = listings.get(&voice.index) else {
                continue;
            };
            outln!(
                "conversation {conversation} of {} ({} object(s), {}):",
                voice.uid,
                listing.chunks.len(),
                output::bytes(listing.chunks.iter().map(|e| e.size).sum())
            )?;
            let table = crate::commands::ls::to_table(listing);
            for line in table.lines().take(8) {
                outln!("  {line}")?;
            }
            if table.lines().count() > 8 {
                outln!("  …")?;
            }
        }
    }

    // 3. Export the first conversation to WAV.
    let started = Instant::now();
    let first = voices.first().ok_or_else(|| anyhow!("no users"))?;
    let end = first.chunk_start(chunks_per_user);
    let request = DownloadRequest::Range {
        from: first.start,
        to: end,
    };
    let exported = export::Job {
        service: &reader,
        uid: &first.uid,
        conversation: &conversation,
        request: &request,
        options: DownloadOptions {
            fill_gaps: true,
            sample_rate: RATE,
            ..DownloadOptions::default()
        },
        format: ExportFormat::Wav,
        progress: ctx.progress(),
    }
    .to_file(&args.wav)
    .await
    .with_context(|| format!("exporting to {}", args.wav.display()))?;
    timings.add("export", started);
    let expected_pcm = chunks_per_user * CHUNK_BYTES as u64;
    if exported.pcm_bytes != expected_pcm {
        bail!(
            "the export of {} holds {} PCM bytes, expected {expected_pcm}",
            first.uid,
            exported.pcm_bytes
        );
    }

    // 4. Verify every chunk.
    let started = Instant::now();
    let (checked, mismatches) =
        verify(ctx, &reader, &voices, &conversation, chunks_per_user).await?;
    timings.add("verify", started);
    let total = total_started.elapsed();

    // 5. Summary.
    let raw_pcm = recorded * CHUNK_BYTES as u64;
    let writes = record_ops.write;
    let hours = (recorded * CHUNK_MS) as f64 / 3_600_000.0;
    if ctx.json {
        output::print_json(&json!({
            "conversation": conversation.as_str(),
            "store": ctx.store.uri_display(),
            "users": voices.iter().map(|v| json!({
                "uid": v.uid.as_str(), "level": v.level.as_str(), "layout": v.layout_name(),
                "objects": listings.get(&v.index).map_or(0, |l| l.chunks.len()),
            })).collect::<Vec<_>>(),
            "chunks": recorded,
            "objects_written": objects,
            "write_operations": writes,
            "write_operations_one_per_chunk": recorded,
            "bytes_stored": stored_bytes,
            "raw_pcm_bytes": raw_pcm,
            "chunks_verified": checked,
            "mismatches": mismatches,
            "wav": args.wav.display().to_string(),
            "wav_bytes": exported.file_bytes,
            "seconds": timings.0.iter().map(|(k, d)| (k.to_string(), json!(d.as_secs_f64()))).collect::<serde_json::Map<_, _>>(),
            "total_seconds": total.as_secs_f64(),
        }))?;
    } else {
        outln!()?;
        outln!("summary")?;
        let rows = vec![
            vec![
                "chunks recorded".to_owned(),
                format!(
                    "{recorded} ({} user(s) × {} min, {} s each)",
                    args.users,
                    args.minutes,
                    CHUNK_MS / 1000
                ),
            ],
            vec!["objects written".to_owned(), objects.to_string()],
            vec![
                "  by layout".to_owned(),
                by_layout(&voices, &listings, chunks_per_user),
            ],
            vec![
                "write operations".to_owned(),
                format!(
                    "{writes} vs {recorded} with one object per chunk ({} fewer; per recorded \
                     hour {:.0} vs 720, {} vs {} at S3 prices)",
                    output::ratio(recorded as f64, writes as f64),
                    writes as f64 / hours,
                    cost::usd(cost::puts(writes) / hours),
                    cost::usd(cost::puts(720)),
                ),
            ],
            vec![
                "bytes stored".to_owned(),
                format!(
                    "{} vs {} raw PCM ({} of raw)",
                    output::bytes(stored_bytes),
                    output::bytes(raw_pcm),
                    percent(stored_bytes, raw_pcm)
                ),
            ],
            vec![
                "round trip".to_owned(),
                format!("{checked}/{recorded} chunks byte-exact"),
            ],
            vec![
                "exported".to_owned(),
                format!(
                    "{} ({} of {}'s audio; check it with: sox --i {})",
                    args.wav.display(),
                    output::duration(Duration::from_millis(chunks_per_user * CHUNK_MS)),
                    first.uid,
                    args.wav.display()
                ),
            ],
            vec![
                "time taken".to_owned(),
                format!(
                    "{} ({})",
                    output::duration(total),
                    timings
                        .0
                        .iter()
                        .map(|(step, d)| format!("{step} {}", output::duration(*d)))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ],
        ];
        for line in output::table(&["", ""], &rows).lines().skip(1) {
            outln!("  {line}")?;
        }
    }
    if mismatches > 0 || checked != recorded {
        bail!("{mismatches} of {recorded} chunk(s) did not round-trip byte-exact");
    }
    Ok(())
}

/// Per layout: objects, chunks, bytes and their share of the raw PCM.
fn by_layout(
    voices: &[Voice],
    listings: &BTreeMap<u32, chunk_service::ConversationListing>,
    chunks_per_user: u64,
) -> String {
    let mut per: BTreeMap<&'static str, (usize, u64, u64)> = BTreeMap::new();
    for voice in voices {
        let slot = per.entry(voice.layout_name()).or_default();
        if let Some(listing) = listings.get(&voice.index) {
            slot.0 += listing.chunks.len();
            slot.2 += listing.chunks.iter().map(|e| e.size).sum::<u64>();
        }
        slot.1 += chunks_per_user;
    }
    per.iter()
        .map(|(layout, (objects, chunks, bytes))| {
            format!(
                "{layout}: {objects} object(s) for {chunks} chunks, {} ({} of raw)",
                output::bytes(*bytes),
                percent(*bytes, chunks * CHUNK_BYTES as u64)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn percent(part: u64, whole: u64) -> String {
    if whole == 0 {
        "-".to_owned()
    } else {
        format!("{:.1} %", part as f64 * 100.0 / whole as f64)
    }
}

/// `demo-<unix seconds>`, bumped past any conversation of that name already in the store.
async fn fresh_conversation(ctx: &Context, now: Timestamp) -> Result<ConversationId> {
    let first = UserId::new("demo-user-1")?;
    let first_try = now.as_millis() / 1000;
    for seconds in first_try..first_try + 100 {
        let conversation = ConversationId::new(format!("demo-{seconds}"))?;
        let taken = !ctx
            .store
            .list_prefix(&format!("chunks/{first}/{conversation}/"))
            .await?
            .objects
            .is_empty();
        if !taken {
            return Ok(conversation);
        }
    }
    bail!("could not find a free demo conversation id")
}

/// The users: odd ones `enhanced`, even ones `standard`; the last (of two or more) in Omi's
/// layout, the others in packs.
fn voices(args: &DemoArgs, now: Timestamp, chunks_per_user: u64) -> Result<Vec<Voice>> {
    let span = chunks_per_user * CHUNK_MS;
    (0..args.users)
        .map(|index| {
            let omi = args.users >= 2 && index + 1 == args.users;
            // The recordings end shortly before now, each user a little offset.
            let offset = u64::from(index) * 1_237;
            let start_ms = now
                .as_millis()
                .checked_sub(span + 60_000 + offset)
                .ok_or_else(|| anyhow!("the system clock is too early for the demo"))?;
            Ok(Voice {
                index,
                uid: UserId::new(format!("demo-user-{}", index + 1))?,
                level: if index % 2 == 0 {
                    ProtectionLevel::Enhanced
                } else {
                    ProtectionLevel::Standard
                },
                layout: if omi { LayoutArg::Omi } else { LayoutArg::Pack },
                start: Timestamp::from_millis(start_ms)
                    .ok_or_else(|| anyhow!("timestamp out of range"))?,
                seed: 0x5EED_0000 + u64::from(index),
            })
        })
        .collect()
}

/// Records every user's audio through one recorder per layout; returns the chunks recorded.
async fn record(
    ctx: &Context,
    voices: &[Voice],
    conversation: &ConversationId,
    chunks_per_user: u64,
    spool_dir: &Path,
) -> Result<u64> {
    let mut recorders: BTreeMap<&'static str, Recorder> = BTreeMap::new();
    for voice in voices {
        if recorders.contains_key(voice.layout_name()) {
            continue;
        }
        // The level comes with every push; the service's default does not matter.
        let service = ctx.service(voice.layout, ProtectionLevel::Standard, RATE)?;
        // The demo pushes far faster than real time, so uploads lag behind pushes; a stream
        // budget large enough for a whole voice keeps budget flushes from cutting batches short.
        let stream_bytes = (chunks_per_user as usize * CHUNK_BYTES).max(64 << 20);
        let preset = match voice.layout {
            LayoutArg::Pack => RecorderConfig::spool(spool_dir),
            LayoutArg::Omi => RecorderConfig::omi(),
        };
        let config = RecorderConfig {
            limits: StreamLimits {
                stream_bytes: stream_bytes.max(preset.limits.stream_bytes),
                ..preset.limits
            },
            ..preset
        };
        let (recorder, _) = Recorder::open(service, config).await?;
        recorders.insert(voice.layout_name(), recorder);
    }
    let bar = progress::bar(
        ctx.progress(),
        chunks_per_user * voices.len() as u64,
        "recording",
    );
    let mut tasks = tokio::task::JoinSet::new();
    for voice in voices.iter().cloned() {
        let recorder = recorders
            .get(voice.layout_name())
            .cloned()
            .ok_or_else(|| anyhow!("no recorder for layout {}", voice.layout_name()))?;
        let conversation = conversation.clone();
        let bar = bar.clone();
        tasks.spawn(async move {
            let mut speech = Speech::new(voice.seed, RATE);
            for chunk in 0..chunks_per_user {
                let pcm = speech.next_pcm(CHUNK_BYTES / 2);
                let ts = voice.chunk_start(chunk);
                recorder
                    .push(&voice.uid, &conversation, ts, pcm, Some(voice.level))
                    .await
                    .with_context(|| format!("recording {}'s chunk at {ts}", voice.uid))?;
                bar.inc(1);
            }
            Ok::<u64, anyhow::Error>(chunks_per_user)
        });
    }
    let mut recorded = 0;
    while let Some(done) = tasks.join_next().await {
        recorded += done.map_err(|e| anyhow!("recording task failed: {e}"))??;
    }
    for recorder in recorders.values() {
        recorder
            .close()
            .await
            .context("uploading the last batches")?;
    }
    bar.finish_and_clear();
    Ok(recorded)
}

/// Downloads every chunk's range and compares it with the synthesized audio; returns the
/// chunks that matched and the mismatches.
async fn verify(
    ctx: &Context,
    reader: &ChunkService,
    voices: &[Voice],
    conversation: &ConversationId,
    chunks_per_user: u64,
) -> Result<(u64, u64)> {
    let bar = progress::bar(
        ctx.progress(),
        chunks_per_user * voices.len() as u64,
        "verifying",
    );
    let mut matched = 0;
    let mut mismatched = 0;
    for voice in voices {
        let mut speech = Speech::new(voice.seed, RATE);
        let expected =
            (0..chunks_per_user).map(move |chunk| (chunk, speech.next_pcm(CHUNK_BYTES / 2)));
        let results: Vec<bool> = stream::iter(expected)
            .map(|(chunk, pcm)| {
                let bar = bar.clone();
                async move {
                    let from = voice.chunk_start(chunk);
                    let request = DownloadRequest::Range {
                        from,
                        to: voice.chunk_start(chunk + 1),
                    };
                    let got = reader
                        .download(
                            &voice.uid,
                            conversation,
                            &request,
                            DownloadOptions::default(),
                        )
                        .await?
                        .collect_vec()
                        .await
                        .with_context(|| format!("downloading {}'s chunk at {from}", voice.uid))?;
                    bar.inc(1);
                    let same = got == pcm;
                    if !same {
                        tracing::error!(
                            uid = %voice.uid,
                            chunk = %from,
                            got = got.len(),
                            expected = pcm.len(),
                            "chunk did not round-trip"
                        );
                    }
                    Ok::<bool, anyhow::Error>(same)
                }
            })
            .buffered(VERIFY_CONCURRENCY)
            .try_collect()
            .await?;
        matched += results.iter().filter(|&&same| same).count() as u64;
        mismatched += results.iter().filter(|&&same| !same).count() as u64;
    }
    bar.finish_and_clear();
    Ok((matched, mismatched))
}
