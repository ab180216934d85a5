//! `stats`: what the store holds under `chunks/` and what it costs, against one object per chunk.
//!
//! Objects, bytes and kinds come from one recursive listing of `chunks/` (or `chunks/{uid}/`).
//! The audio comes from the library's audit of each conversation
//! ([`ChunkService::audit`](chunk_service::ChunkService::audit)), which reads and decodes every
//! object once and places it as a download does:
//!
//! - audio duration: the covered time, exact for every kind (Opus included), each instant
//!   once however many objects hold it (a `.bin` and an `.opus` of one chunk, overlapping
//!   packs);
//! - chunks (what a client writing one object per 5 s chunk would have written): each
//!   covered span in 5 s pieces, rounded up;
//! - objects that cannot be decoded (damage, or sealed and no secret given) are reported and
//!   add no audio.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Result;
use chunk_service::{AuditOptions, ChunkService};
use chunk_store::{ChunkPath, ConversationId, Store, UserId};
use serde_json::json;

use crate::cli::StatsArgs;
use crate::context::{self, Context};
use crate::{cost, output, progress};

/// The chunk length of a client writing one object per chunk (Omi's 5 s).
const CHUNK_MS: u64 = 5_000;
/// One object per chunk at 5 s: writes per recorded hour.
const WRITES_PER_HOUR_PER_CHUNK: f64 = 720.0;

/// What the walk and the audits counted.
#[derive(Debug, Default, Clone)]
pub(crate) struct Totals {
    /// Audio objects.
    pub(crate) objects: u64,
    /// Their bytes.
    pub(crate) bytes: u64,
    /// Per kind: objects and bytes.
    pub(crate) kinds: BTreeMap<&'static str, (u64, u64)>,
    /// Covered audio time, each instant once.
    pub(crate) audio: Duration,
    /// 5 s chunks of the covered time.
    pub(crate) chunks: u64,
    /// Distinct users and conversations.
    pub(crate) users: BTreeSet<String>,
    /// Distinct (user, conversation) pairs.
    pub(crate) conversations: BTreeSet<(String, String)>,
    /// Non-audio objects under the prefix.
    pub(crate) foreign: u64,
    /// Audio objects that cannot be decoded: (path, why). Counted in `objects` and `bytes`,
    /// not in the audio; the walk goes on past them.
    pub(crate) bad: Vec<(String, String)>,
}

/// Walks `prefix` (ends in `/`): one listing for objects and bytes, then the audit of each
/// conversation for the audio (progress on `bar`).
pub(crate) async fn walk(
    store: &Store,
    service: &ChunkService,
    prefix: &str,
    show_progress: bool,
) -> Result<Totals> {
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
        let slot = totals.kinds.entry(name.kind().extension()).or_default();
        slot.0 += 1;
        slot.1 += size;
    }
    let bar = progress::bar(show_progress, totals.conversations.len() as u64, "auditing");
    let mut audio_secs = 0.0;
    for (uid, conversation) in &totals.conversations {
        let (uid, conversation) = (UserId::new(uid)?, ConversationId::new(conversation)?);
        let audit = service
            .audit(&uid, &conversation, AuditOptions::default())
            .await?;
        audio_secs += audit.covered_seconds;
        let rate = u64::from(audit.sample_rate.unwrap_or(16_000).max(1));
        totals.chunks += audit
            .covered
            .iter()
            .map(|span| (span.samples * 1000).div_ceil(rate).div_ceil(CHUNK_MS))
            .sum::<u64>();
        totals.bad.extend(audit.undecodable.into_iter().map(|bad| {
            let reason = output::reason_for(&bad.path, &bad.reason).to_owned();
            (bad.path, reason)
        }));
        bar.inc(1);
    }
    bar.finish_and_clear();
    totals.audio = Duration::from_secs_f64(audio_secs);
    Ok(totals)
}

/// Runs `stats`.
pub(crate) async fn run(ctx: &Context, args: &StatsArgs) -> Result<()> {
    let prefix = match &args.uid {
        Some(uid) => format!("chunks/{}/", context::user(uid)?),
        None => "chunks/".to_owned(),
    };
    let service = ctx.reader()?;
    let totals = walk(&ctx.store, &service, &prefix, ctx.progress()).await?;
    let chunks = totals.chunks;
    let hours = totals.audio.as_secs_f64() / 3600.0;
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
            "audio_seconds": totals.audio.as_secs_f64(),
            "chunks": chunks,
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
            "BAD  {}: {} (adds no audio)",
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
    outln!(
        "audio {} (covered time: each instant once, from decoding every object)",
        output::duration(totals.audio)
    )?;
    let locked = totals
        .bad
        .iter()
        .any(|(_, reason)| reason.contains("no key material"));
    if locked && !ctx.has_secret() {
        outln!(
            "note: no secret was given (CHUNKVAULT_SECRET or --secret-file): sealed objects add no audio"
        )?;
    }
    outln!("chunks {chunks} (the covered time in 5 s chunks)")?;
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
