//! `verify`: read and decode every audio object; report bad ones with the reason.
//!
//! Each object is read whole and decoded as its name says, with the library decoders: raw PCM
//! (`.bin`, `.batch.bin`), Omi frames opened with the user's key (`.enc`, `.batch.enc`), the
//! Omi Opus container decoded (`.opus`, `.opus.enc`), and packs (index, every frame, CRC or
//! authentication, and the name against the index). An object is bad if it is empty, cannot be
//! decoded, or is encrypted and no secret was given. Objects under `chunks/` whose names are
//! not audio names are reported as foreign and not counted as bad.

use std::sync::Arc;

use anyhow::{Result, anyhow, bail};
use bytes::Bytes;
use chunk_crypto::Keyring;
use chunk_crypto::pack::SealParams;
use chunk_format::pack::{FrameCodec, PackIndex, PackTail, SegmentOpener};
use chunk_format::{ObjectKind, ObjectName};
use chunk_service::codec::opus::{OmiOpusCodec, decode_omi_opus};
use chunk_store::{Store, layout};
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
    pub(crate) uid: String,
    /// Its parsed name.
    pub(crate) name: ObjectName,
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
    let keyring = ctx.keyring()?.map(Arc::new);
    let mut results: Vec<(Target, Result<Decoded, String>)> = stream::iter(targets)
        .map(|target| {
            let store = ctx.store.clone();
            let keyring = keyring.clone();
            let bar = bar.clone();
            async move {
                let result = check(&store, keyring, &target).await;
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
                uid: uid.as_str().to_owned(),
                name: o.name,
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
        match parse_chunk_path(&path) {
            Ok((uid, name)) => {
                let uid = uid.to_owned();
                targets.push(Target { path, uid, name });
            }
            Err(reason) => foreign.push(Foreign { path, size, reason }),
        }
    }
    Ok((targets, foreign))
}

/// Splits `chunks/{uid}/{conversation}/{name}` into the user id and the parsed name.
pub(crate) fn parse_chunk_path(path: &str) -> Result<(&str, ObjectName), String> {
    let rest = path
        .strip_prefix("chunks/")
        .ok_or_else(|| "not under chunks/".to_owned())?;
    let parts: Vec<&str> = rest.split('/').collect();
    let [uid, conversation, name] = parts[..] else {
        return Err("not at chunks/{uid}/{conversation}/{name}".to_owned());
    };
    layout::UserId::new(uid).map_err(|e| e.to_string())?;
    layout::ConversationId::new(conversation).map_err(|e| e.to_string())?;
    let name = name.parse::<ObjectName>().map_err(|e| e.to_string())?;
    Ok((uid, name))
}

/// Reads and decodes one object; `Err` holds the reason it is bad.
pub(crate) async fn check(
    store: &Store,
    keyring: Option<Arc<Keyring>>,
    target: &Target,
) -> Result<Decoded, String> {
    let bytes = store.read(&target.path).await.map_err(|e| e.to_string())?;
    let target = target.clone();
    tokio::task::spawn_blocking(move || decode(&target, keyring.as_deref(), &bytes))
        .await
        .map_err(|e| format!("decoding task failed: {e}"))?
        .map_err(|e| format!("{e:#}"))
}

/// Decodes one object's bytes as its name says.
fn decode(target: &Target, keyring: Option<&Keyring>, bytes: &Bytes) -> Result<Decoded> {
    if bytes.is_empty() {
        bail!("empty object: holds no audio");
    }
    let kind = target.name.kind();
    let omi_key = || {
        let keyring = keyring.ok_or_else(|| {
            anyhow!(
                "encrypted object, but no secret was given (CHUNKVAULT_SECRET or --secret-file)"
            )
        })?;
        Ok::<_, anyhow::Error>(keyring.omi_key(&target.uid)?)
    };
    match kind {
        ObjectKind::Bin | ObjectKind::BatchBin => Ok(Decoded {
            pcm_bytes: (bytes.len() - bytes.len() % 2) as u64,
            chunks: 1,
        }),
        ObjectKind::Enc | ObjectKind::BatchEnc | ObjectKind::OpusEnc => {
            let key = omi_key()?;
            let mut decoded = Decoded {
                pcm_bytes: 0,
                chunks: 0,
            };
            for plain in chunk_crypto::omi::open_object(&key, bytes) {
                let plain = plain?;
                let pcm_len = if kind == ObjectKind::OpusEnc {
                    decode_omi_opus(&plain)
                        .map_err(|e| anyhow!("frame {}: {e}", decoded.chunks))?
                        .len()
                } else {
                    plain.len() - plain.len() % 2
                };
                decoded.pcm_bytes += pcm_len as u64;
                decoded.chunks += 1;
            }
            Ok(decoded)
        }
        ObjectKind::Opus => Ok(Decoded {
            pcm_bytes: decode_omi_opus(bytes)?.len() as u64,
            chunks: 1,
        }),
        ObjectKind::Pack => decode_pack(target, keyring, bytes),
    }
}

fn decode_pack(target: &Target, keyring: Option<&Keyring>, bytes: &Bytes) -> Result<Decoded> {
    let len = bytes.len() as u64;
    let tail = PackTail::new(bytes, len)?;
    let opener = match tail.header().seal() {
        None => None,
        Some(info) => {
            let keyring = keyring.ok_or_else(|| {
                anyhow!("sealed pack, but no secret was given (CHUNKVAULT_SECRET or --secret-file)")
            })?;
            Some(keyring.pack_opener(&target.uid, &SealParams::from(*info))?)
        }
    };
    let opener = opener.as_ref().map(|o| o as &dyn SegmentOpener);
    let index = PackIndex::from_object(bytes, opener)?;
    let expected = index.object_name()?;
    // A pack rewritten by a delete may carry an END bumped past its audio (still an upper
    // bound); the start must match exactly.
    if expected.start() != target.name.start() || expected.end() > target.name.end() {
        bail!(
            "the index says this pack is {expected}, not {}",
            target.name
        );
    }
    let mut decoded = Decoded {
        pcm_bytes: 0,
        chunks: 0,
    };
    for chunk in 0..index.len() {
        let frame = index.frame_bytes(chunk, bytes)?;
        let codec = index
            .header()
            .codec()
            .needs_frame_codec()
            .then_some(&OmiOpusCodec as &dyn FrameCodec);
        decoded.pcm_bytes += index.decode_frame_with(chunk, frame, opener, codec)?.len() as u64;
        decoded.chunks += 1;
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_paths() {
        let (uid, name) = parse_chunk_path("chunks/u1/c1/1786961845.727.bin").unwrap();
        assert_eq!(uid, "u1");
        assert_eq!(name.kind(), ObjectKind::Bin);
        assert!(parse_chunk_path("chunks/u1/c1/notes.txt").is_err());
        assert!(parse_chunk_path("chunks/u1/1786961845.727.bin").is_err());
        assert!(parse_chunk_path("chunks/u1/c1/x/1786961845.727.bin").is_err());
        assert!(parse_chunk_path("audio/u1/c1/1786961845.727.bin").is_err());
    }
}
