//! `verify`: read and decode every audio object; report bad ones with the reason.
//!
//! Each object is checked by the library ([`ChunkService::check_object`]): read and decoded
//! as its name says with the read path's own rules — raw PCM (`.bin`, `.batch.bin`), Omi
//! frames opened with the user's key (`.enc`, `.batch.enc`), the Omi Opus container decoded
//! (`.opus`, `.opus.enc`), and packs (index, every frame, CRC or authentication, the name
//! against the index, plaintext refused with `--require-sealed`), one decoded chunk at a time
//! and no piece above the decode limit. An object is bad if it is empty, cannot be decoded, or
//! is encrypted and no secret was given. Objects under `chunks/` whose names are not audio
//! names are reported as foreign and not counted as bad.

use anyhow::{Result, bail};
use chunk_format::ObjectName;
use chunk_service::ChunkService;
use chunk_store::{ChunkPath, ConversationId, Store, UserId};
use futures::{StreamExt, TryStreamExt, stream};
use serde_json::json;

use crate::cli::VerifyArgs;
use crate::context::{self, Context};
use crate::{output, progress};

/// Objects checked at once.
const CONCURRENCY: usize = 8;

/// An audio object to check.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// Object path.
    pub(crate) path: String,
    /// Its user id (for the key).
    pub(crate) uid: UserId,
    /// Its conversation (a sealed pack opens only in its own).
    pub(crate) conversation: ConversationId,
    /// Its parsed name.
    pub(crate) name: ObjectName,
    /// Its size as listed.
    pub(crate) size: u64,
}

/// A non-audio object found while walking.
#[derive(Debug, Clone)]
pub(crate) struct Foreign {
    path: String,
    size: u64,
    reason: String,
}

/// What decoding one object found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decoded {
    /// PCM bytes decoded.
    pub(crate) pcm_bytes: u64,
    /// Chunks (frames) decoded.
    pub(crate) chunks: usize,
}

/// Runs `verify`.
pub(crate) async fn run(ctx: &Context, args: &VerifyArgs) -> Result<()> {
    let (targets, foreign) = collect(&ctx.store, args).await?;
    let bar = progress::bar(ctx.progress(), targets.len() as u64, "verifying");
    let service = ctx.reader()?;
    let mut results: Vec<(Target, Result<Decoded, String>)> = stream::iter(targets)
        .map(|target| {
            let service = service.clone();
            let bar = bar.clone();
            async move {
                let result = check(&service, &target).await;
                bar.inc(1);
                Ok::<_, anyhow::Error>((target, result))
            }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect()
        .await?;
    bar.finish_and_clear();
    results.sort_by(|a, b| a.0.path.cmp(&b.0.path));
    let bad: Vec<(&str, &str)> = results
        .iter()
        .filter_map(|(t, r)| {
            r.as_ref()
                .err()
                .map(|reason| (t.path.as_str(), reason.as_str()))
        })
        .collect();
    let ok = results.len() - bad.len();
    let pcm: u64 = results
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().map(|d| d.pcm_bytes))
        .sum();
    if ctx.json {
        output::print_json(&json!({
            "checked": results.len(),
            "ok": ok,
            "pcm_bytes": pcm,
            "bad": bad.iter().map(|(path, reason)| json!({"path": path, "reason": reason})).collect::<Vec<_>>(),
            "foreign": foreign.iter().map(|f| json!({"path": f.path, "size": f.size, "reason": f.reason})).collect::<Vec<_>>(),
        }))?;
    } else {
        // Names and reasons printed escaped: a foreign name is anyone's bytes.
        for (path, reason) in &bad {
            outln!(
                "BAD  {}: {}",
                output::escaped(path),
                output::escaped(reason)
            )?;
        }
        for f in &foreign {
            outln!(
                "skip {} ({} B): not audio: {}",
                output::escaped(&f.path),
                f.size,
                output::escaped(&f.reason)
            )?;
        }
        let locked = bad
            .iter()
            .any(|(_, reason)| reason.contains("no key material"));
        if locked && !ctx.has_secret() {
            outln!(
                "note: no secret was given (CHUNKVAULT_SECRET or --secret-file): sealed objects cannot be opened"
            )?;
        }
        outln!(
            "checked {} audio object(s): {ok} ok ({} of PCM), {} bad; {} foreign object(s) skipped",
            results.len(),
            output::bytes(pcm),
            bad.len(),
            foreign.len()
        )?;
    }
    if !bad.is_empty() {
        bail!(
            "{} of {} audio object(s) are bad (first: {})",
            bad.len(),
            results.len(),
            bad.first().map_or("", |(path, _)| path)
        );
    }
    Ok(())
}

/// The audio objects (and foreign ones) the arguments select.
async fn collect(store: &Store, args: &VerifyArgs) -> Result<(Vec<Target>, Vec<Foreign>)> {
    if let (Some(uid), Some(conversation)) = (&args.uid, &args.conversation) {
        let uid = context::user(uid)?;
        let conversation = context::conversation(conversation)?;
        let listing = store.list_conversation(&uid, &conversation).await?;
        let targets = listing
            .objects
            .into_iter()
            .map(|o| Target {
                path: o.path,
                uid: uid.clone(),
                conversation: conversation.clone(),
                name: o.name,
                size: o.size,
            })
            .collect();
        let foreign = listing
            .foreign
            .into_iter()
            .map(|f| Foreign {
                path: f.path,
                size: f.size,
                reason: f.reason,
            })
            .collect();
        return Ok((targets, foreign));
    }
    let prefix = match &args.uid {
        Some(uid) => format!("chunks/{}/", context::user(uid)?),
        None => "chunks/".to_owned(),
    };
    let mut targets = Vec::new();
    let mut foreign = Vec::new();
    let listing = store.list_prefix(&prefix).await?;
    for special in listing.foreign {
        foreign.push(Foreign {
            path: special.path,
            size: special.size,
            reason: special.reason,
        });
    }
    for (path, size) in listing.objects {
        match ChunkPath::parse(&path) {
            Ok(place) => targets.push(Target {
                path,
                uid: place.uid,
                conversation: place.conversation,
                name: place.name,
                size,
            }),
            Err(reason) => foreign.push(Foreign {
                path,
                size,
                reason: reason.to_string(),
            }),
        }
    }
    Ok((targets, foreign))
}

/// Reads and decodes one object with the library's read path; `Err` holds the reason it is
/// bad.
pub(crate) async fn check(service: &ChunkService, target: &Target) -> Result<Decoded, String> {
    service
        .check_object(
            &target.uid,
            &target.conversation,
            &target.path,
            &target.name,
            target.size,
        )
        .await
        .map(|found| Decoded {
            pcm_bytes: found.pcm_bytes,
            chunks: found.chunks,
        })
        .map_err(|error| output::reason_for(&target.path, &error.to_string()).to_owned())
}
