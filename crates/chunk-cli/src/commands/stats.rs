//! `stats`: what the store holds under `chunks/` and what it costs, against one object per chunk.
//!
//! Walks `chunks/` (or `chunks/{uid}/`) with one recursive listing and parses every name; no
//! object is read except each pack's tail.
//!
//! - Audio duration: exact for packs (their name is the time range) and for raw PCM objects
//!   (`size / 32000` s: Omi's 16 kHz PCM16 mono); for single-frame Omi-encrypted objects
//!   `(size − 32) / 32000` s, exact too; for encrypted range batches estimated with one 32-byte
//!   frame overhead per estimated 5 s chunk. Opus objects are counted but their duration is not
//!   estimated.
//! - Chunks: one per single-chunk object (one-chunk batches included), the trailer's count for
//!   packs (one ranged read of each pack's tail), and for Omi range batches an estimate: the
//!   duration at 5 s per chunk, rounded to the nearest.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Result;
use chunk_format::ObjectKind;
use chunk_format::pack::PackTail;
use chunk_store::{ChunkPath, Store};
use serde_json::json;

use crate::cli::StatsArgs;
use crate::context::{self, Context};
use crate::{cost, output};

/// Omi's chunk length, for estimates.
const CHUNK_MS: u64 = 5_000;
/// Bytes per second of Omi's PCM (16 kHz PCM16 mono).
const PCM_BYTES_PER_SEC: u64 = 32_000;
/// Bytes an Omi frame adds to its plaintext (length, nonce, tag).
const FRAME_OVERHEAD: u64 = 32;
/// One sealed 5 s chunk of Omi PCM.
const CHUNK_FRAME_BYTES: u64 = 5 * PCM_BYTES_PER_SEC + FRAME_OVERHEAD;
/// One object per chunk at 5 s: writes per recorded hour.
const WRITES_PER_HOUR_PER_CHUNK: f64 = 720.0;

/// What the walk counted.
#[derive(Debug, Default, Clone)]
pub(crate) struct Totals {
    /// Audio objects.
    pub(crate) objects: u64,
    /// Their bytes.
    pub(crate) bytes: u64,
    /// Per kind: objects and bytes.
    pub(crate) kinds: BTreeMap<&'static str, (u64, u64)>,
    /// Audio duration that is exact (packs, raw PCM).
    pub(crate) exact_ms: u64,
    /// Audio duration estimated from sizes (encrypted objects).
    pub(crate) estimated_ms: u64,
    /// Opus objects whose duration is not estimated.
    pub(crate) opus_objects: u64,
    /// Chunks counted exactly (single objects, pack trailers).
    pub(crate) chunks_exact: u64,
    /// Chunks estimated from durations (Omi range batches).
    pub(crate) chunks_estimated: u64,
    /// Distinct users and conversations.
    pub(crate) users: BTreeSet<String>,
    /// Distinct (user, conversation) pairs.
    pub(crate) conversations: BTreeSet<(String, String)>,
    /// Non-audio objects under the prefix.
    pub(crate) foreign: u64,
    /// Audio objects whose index could not be read: (path, why). Counted in `objects` and
    /// `bytes`, not in durations or chunks; the walk goes on past them.
    pub(crate) bad: Vec<(String, String)>,
}

impl Totals {
    /// Chunks, exact and estimated.
    pub(crate) fn chunks(&self) -> u64 {
        self.chunks_exact + self.chunks_estimated
    }

    /// Audio duration, exact and estimated.
    pub(crate) fn audio(&self) -> Duration {
        Duration::from_millis(self.exact_ms + self.estimated_ms)
    }
}

/// Walks `prefix` (ends in `/`) and counts.
pub(crate) async fn walk(store: &Store, prefix: &str) -> Result<Totals> {
    let mut totals = Totals::default();
    let listing = store.list_prefix(prefix).await?;
    totals.foreign += listing.foreign.len() as u64;
    for (path, size) in listing.objects {
        let Ok(ChunkPath {
            uid,
            conversation,
            name,
        }) = ChunkPath::parse(&path)
        else {
            totals.foreign += 1;
            continue;
        };
        totals.users.insert(uid.as_str().to_owned());
        totals
            .conversations
            .insert((uid.as_str().to_owned(), conversation.as_str().to_owned()));
        totals.objects += 1;
        totals.bytes += size;
        let kind = name.kind();
        let slot = totals.kinds.entry(kind.extension()).or_default();
        slot.0 += 1;
        slot.1 += size;
        let pcm_ms = |bytes: u64| bytes / 2 * 2 * 1000 / PCM_BYTES_PER_SEC;
        let range = name.range_end().is_some();
        match kind {
            ObjectKind::Pack => match pack_chunks(store, &path, size).await {
                Ok(chunks) => {
                    totals.exact_ms += name
                        .end()
                        .as_millis()
                        .saturating_sub(name.start().as_millis());
                    totals.chunks_exact += u64::from(chunks);
                }
                // One bad pack does not hide the rest of the store: report it, go on.
                Err(error) => totals.bad.push((path.clone(), format!("{error:#}"))),
            },
            ObjectKind::Bin => {
                totals.exact_ms += pcm_ms(size);
                totals.chunks_exact += 1;
            }
            ObjectKind::BatchBin if range => {
                totals.exact_ms += pcm_ms(size);
                totals.chunks_estimated += round_div(pcm_ms(size), CHUNK_MS).max(1);
            }
            ObjectKind::BatchBin => {
                totals.exact_ms += pcm_ms(size);
                totals.chunks_exact += 1;
            }
            ObjectKind::Enc => {
                totals.exact_ms += pcm_ms(size.saturating_sub(FRAME_OVERHEAD));
                totals.chunks_exact += 1;
            }
            ObjectKind::BatchEnc if range => {
                // One frame per chunk: 5 s chunks are CHUNK_FRAME_BYTES each.
                let frames = round_div(size, CHUNK_FRAME_BYTES).max(1);
                totals.estimated_ms += pcm_ms(size.saturating_sub(frames * FRAME_OVERHEAD));
                totals.chunks_estimated += frames;
            }
            ObjectKind::BatchEnc => {
                totals.exact_ms += pcm_ms(size.saturating_sub(FRAME_OVERHEAD));
                totals.chunks_exact += 1;
            }
            ObjectKind::Opus | ObjectKind::OpusEnc => {
                totals.opus_objects += 1;
                totals.chunks_exact += 1;
            }
        }
    }
    Ok(totals)
}

/// `n / d` rounded to the nearest integer.
fn round_div(n: u64, d: u64) -> u64 {
    (n + d / 2) / d.max(1)
}

/// A pack's chunk count, from its trailer (one ranged read of the tail).
async fn pack_chunks(store: &Store, path: &str, size: u64) -> Result<u32> {
    let read = PackTail::read_len(size);
    let tail = store.read_range(path, size - read..size).await?;
    let tail = PackTail::new(&tail, size).map_err(|e| anyhow::anyhow!("{path}: {e}"))?;
    Ok(tail.chunk_count())
}

/// Runs `stats`.
pub(crate) async fn run(ctx: &Context, args: &StatsArgs) -> Result<()> {
    let prefix = match &args.uid {
        Some(uid) => format!("chunks/{}/", context::user(uid)?),
        None => "chunks/".to_owned(),
    };
    let totals = walk(&ctx.store, &prefix).await?;
    let chunks = totals.chunks();
    let hours = totals.audio().as_secs_f64() / 3600.0;
    let per_hour = |n: u64| if hours > 0.0 { n as f64 / hours } else { 0.0 };
    if ctx.json {
        return output::print_json(&json!({
            "store": ctx.store.uri_display(),
            "prefix": prefix,
            "users": totals.users.len(),
            "conversations": totals.conversations.len(),
            "objects": totals.objects,
            "bytes": totals.bytes,
            "kinds": totals.kinds.iter().map(|(k, (n, b))| (k.to_string(), json!({"objects": n, "bytes": b}))).collect::<serde_json::Map<_, _>>(),
            "foreign_objects": totals.foreign,
            "bad_objects": totals.bad.iter().map(|(path, reason)| json!({"path": path, "reason": reason})).collect::<Vec<_>>(),
            "audio_seconds": totals.audio().as_secs_f64(),
            "audio_seconds_estimated": Duration::from_millis(totals.estimated_ms).as_secs_f64(),
            "opus_objects_without_duration": totals.opus_objects,
            "chunks": chunks,
            "chunks_estimated": totals.chunks_estimated,
            "write_operations": totals.objects,
            "write_operations_one_per_chunk": chunks,
            "writes_per_recorded_hour": per_hour(totals.objects),
            "cost_usd": {
                "storage_per_month": cost::storage_per_month(totals.bytes),
                "writes": cost::puts(totals.objects),
                "writes_one_per_chunk": cost::puts(chunks),
                "read_all_once": cost::gets(totals.objects),
                "read_all_once_one_per_chunk": cost::gets(chunks),
            },
            "assumptions": cost::ASSUMPTIONS,
        }));
    }
    outln!("store {} ({prefix})", ctx.store.uri_display())?;
    outln!(
        "users {}, conversations {}, audio objects {} ({}), foreign objects {}",
        totals.users.len(),
        totals.conversations.len(),
        totals.objects,
        output::bytes(totals.bytes),
        totals.foreign
    )?;
    for (path, reason) in &totals.bad {
        outln!(
            "BAD  {}: {} (not counted in audio or chunks)",
            output::escaped(path),
            output::escaped(reason)
        )?;
    }
    let kinds: Vec<Vec<String>> = totals
        .kinds
        .iter()
        .map(|(kind, (n, b))| vec![format!("  .{kind}"), n.to_string(), output::bytes(*b)])
        .collect();
    if !kinds.is_empty() {
        output::write_text(&output::table(&["  KIND", "OBJECTS", "BYTES"], &kinds))?;
    }
    let mut audio = format!("audio {}", output::duration(totals.audio()));
    if totals.estimated_ms > 0 {
        audio.push_str(&format!(
            " ({} of it estimated from the size of encrypted objects)",
            output::duration(Duration::from_millis(totals.estimated_ms))
        ));
    }
    if totals.opus_objects > 0 {
        audio.push_str(&format!(
            "; plus {} Opus object(s) whose duration is not estimated",
            totals.opus_objects
        ));
    }
    outln!("{audio}")?;
    outln!(
        "chunks {chunks}{}",
        if totals.chunks_estimated > 0 {
            format!(
                " ({} estimated at 5 s each in Omi range batches)",
                totals.chunks_estimated
            )
        } else {
            String::new()
        }
    )?;
    outln!(
        "write operations: {} (one per object) vs {chunks} with one object per chunk: {} fewer",
        totals.objects,
        output::ratio(chunks as f64, totals.objects as f64)
    )?;
    if hours > 0.0 {
        outln!(
            "  per recorded hour: {:.1} writes vs {WRITES_PER_HOUR_PER_CHUNK:.0}",
            per_hour(totals.objects)
        )?;
    }
    outln!(
        "cost: storage {} per month; writing it {} (one object per chunk: {}); reading it all \
         once {} (one per chunk: {})",
        cost::usd(cost::storage_per_month(totals.bytes)),
        cost::usd(cost::puts(totals.objects)),
        cost::usd(cost::puts(chunks)),
        cost::usd(cost::gets(totals.objects)),
        cost::usd(cost::gets(chunks)),
    )?;
    outln!("  prices: {}", cost::ASSUMPTIONS)?;
    Ok(())
}
