//! Turning one stored object's bytes into PCM pieces, by the kind its name says.

use bytes::Bytes;
use chunk_crypto::UserKey;
use chunk_format::ObjectKind;

use crate::error::{DecodeError, ServiceError};
use crate::read::policy::claim_within;
use chunk_format::omi_opus::OpusContainer;

/// Runs `decode` (CPU-bound: decompressing, opening, Opus) on tokio's blocking pool, so a check
/// of a whole object does not hold up the runtime's workers and checks run in parallel; a
/// panicked or cancelled task is a decode error of `path`.
pub(crate) async fn on_blocking<T: Send + 'static>(
    path: &str,
    decode: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(decode)
        .await
        .map_err(|error| ServiceError::decode(path, error))?
}

/// Runs `work` (CPU-bound: compressing, sealing, decompressing, opening) on the process's CPU
/// pool (rayon's global pool: one thread per core), so the runtime's workers stay free for
/// I/O and for everyone else's calls while the work uses every core. A small fixed pool,
/// unlike tokio's blocking pool (up to 512 threads), keeps the allocator's per-thread arenas,
/// and with them peak memory, bounded (see docs/BENCHMARKS.md). `Err` if `work` panicked.
pub(crate) async fn on_cpu_pool<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, CpuPanicked> {
    let (done, result) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
        // The receiver is gone when the caller was dropped: nothing to deliver.
        let _ = done.send(outcome);
    });
    match result.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) | Err(_) => Err(CpuPanicked),
    }
}

/// Work on the CPU pool panicked.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuPanicked;

/// Runs `decode` on the CPU pool ([`on_cpu_pool`]), so the jobs a download keeps in flight
/// decode on every core while the caller's task places and emits audio. A panic in `decode`
/// is a decode error of `path`.
pub(crate) async fn on_decode_pool<T: Send + 'static>(
    path: &str,
    decode: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    on_cpu_pool(decode)
        .await
        .unwrap_or_else(|CpuPanicked| Err(ServiceError::decode(path, DecodeError::Panicked)))
}

/// Drops a trailing odd byte so the piece holds whole PCM16 samples.
///
/// Applied per chunk wherever chunk boundaries are known (each frame of a `.batch.enc`, each
/// pack chunk); a `.batch.bin` records no boundaries, so only its end can be trimmed.
pub(crate) fn trim_to_samples(mut pcm: Bytes) -> Bytes {
    if pcm.len() % 2 == 1 {
        pcm.truncate(pcm.len() - 1);
    }
    pcm
}

/// Decodes an Omi Opus container after checking its claim (packet count × 20 ms, cut to its
/// declared PCM length) against `limit`, so a container of millions of empty packets is
/// refused before any is decoded.
fn decode_opus(path: &str, container: &[u8], limit: u64) -> Result<Bytes, ServiceError> {
    let parsed =
        OpusContainer::parse(container).map_err(|error| ServiceError::decode(path, error))?;
    claim_within(
        path,
        || format!("the Opus container ({} packets)", parsed.packet_count()),
        parsed.decoded_pcm_len(),
        limit,
    )?;
    crate::codec::opus::decode_omi_opus(container)
        .map(|pcm| trim_to_samples(Bytes::from(pcm)))
        .map_err(|error| ServiceError::decode(path, error))
}

/// Decodes an Omi object into contiguous PCM pieces (one per chunk where the object records
/// chunk boundaries). `key` is needed for the encrypted kinds. `limit` bounds what an Opus
/// container may claim to decode to (the caller bounds the other kinds by their size before
/// reading them).
pub(crate) fn decode_omi_object(
    path: &str,
    kind: ObjectKind,
    bytes: Bytes,
    key: Option<&UserKey>,
    limit: u64,
) -> Result<Vec<Bytes>, ServiceError> {
    match kind {
        ObjectKind::Bin | ObjectKind::BatchBin => Ok(vec![trim_to_samples(bytes)]),
        ObjectKind::Enc | ObjectKind::BatchEnc => {
            let key = key.ok_or_else(|| ServiceError::decode(path, DecodeError::NoKeyMaterial))?;
            // Opened in place: the object's buffer becomes its plaintext (no copy when the
            // caller holds the only reference, as after a read).
            let mut object = bytes
                .try_into_mut()
                .unwrap_or_else(|shared| shared[..].into());
            let plaintexts =
                chunk_crypto::omi::open_object_in_place(key, &mut object).map_err(|source| {
                    ServiceError::Crypto {
                        path: path.to_owned(),
                        source,
                    }
                })?;
            let object = object.freeze();
            Ok(plaintexts
                .into_iter()
                .map(|range| trim_to_samples(object.slice(range)))
                .collect())
        }
        ObjectKind::Opus | ObjectKind::OpusEnc => {
            let container = omi_opus_container(path, kind, bytes, key)?;
            decode_opus(path, &container, limit).map(|pcm| vec![pcm])
        }
        ObjectKind::Pack => Err(ServiceError::decode(
            path,
            DecodeError::WrongKind {
                kind: kind.to_string(),
                wanted: "Omi audio (packs are read by the pack reader)",
            },
        )),
    }
}

/// [`decode_omi_object`], also returning the Omi Opus container of an `.opus` / `.opus.enc`
/// object when it decodes to exactly the returned PCM (a container whose PCM was trimmed to
/// whole samples does not): what lets compaction store an Opus chunk unchanged.
pub(crate) fn decode_omi_keeping_opus(
    path: &str,
    kind: ObjectKind,
    bytes: Bytes,
    key: Option<&UserKey>,
    limit: u64,
) -> Result<(Vec<Bytes>, Option<Bytes>), ServiceError> {
    if !matches!(kind, ObjectKind::Opus | ObjectKind::OpusEnc) {
        return decode_omi_object(path, kind, bytes, key, limit).map(|pieces| (pieces, None));
    }
    let container = omi_opus_container(path, kind, bytes, key)?;
    let pcm = decode_opus(path, &container, limit)?;
    let exact = OpusContainer::parse(&container)
        .is_ok_and(|c| u64::from(c.original_pcm_len()) == pcm.len() as u64);
    Ok((vec![pcm], exact.then_some(container)))
}

/// The Omi Opus container an `.opus` object is, or an `.opus.enc` object seals (opened with
/// `key`). Other kinds are an error.
pub(crate) fn omi_opus_container(
    path: &str,
    kind: ObjectKind,
    bytes: Bytes,
    key: Option<&UserKey>,
) -> Result<Bytes, ServiceError> {
    match kind {
        ObjectKind::Opus => Ok(bytes),
        ObjectKind::OpusEnc => {
            let key = key.ok_or_else(|| ServiceError::decode(path, DecodeError::NoKeyMaterial))?;
            // Omi seals the whole container as one frame; accept N frames like every `.enc`.
            let mut container = Vec::new();
            for plain in chunk_crypto::omi::open_object(key, &bytes) {
                container.extend(plain.map_err(|source| ServiceError::Crypto {
                    path: path.to_owned(),
                    source,
                })?);
            }
            Ok(Bytes::from(container))
        }
        other => Err(ServiceError::decode(
            path,
            DecodeError::WrongKind {
                kind: other.to_string(),
                wanted: "Opus container",
            },
        )),
    }
}
