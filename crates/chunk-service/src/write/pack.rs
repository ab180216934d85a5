//! Packs on the write path: writing a batch as a pack (in memory or streamed), verifying it
//! by reading it back, and writing a fresh pack of given chunks, which rewrites (a delete
//! inside a pack) and compaction use.

use bytes::Bytes;
use chunk_crypto::pack::PackPlace;
use chunk_format::pack::{Codec, PackConfig, PackEncoder, PackError, pack_name_end};
use chunk_format::{ObjectName, Timestamp};
use chunk_store::{ConversationId, PutMode, StoreError, UserId, layout};

use crate::codec::opus::{
    OmiOpusCodec, OpusBackend, OpusError, OpusOperation, decode_omi_opus, encode_omi_opus,
};
use crate::error::{DecodeError, ServiceError};
use crate::level::ProtectionLevel;
use crate::read::decode::trim_to_samples;
use crate::read::pack::{StoredPack, pack_error};
use crate::read::policy::{OpenFor, PackSealing};
use crate::service::ChunkService;
use crate::write::upload::Chunk;

/// Largest batch (raw PCM bytes) encoded in memory and stored with one PUT; larger batches
/// stream through the store's writer (multipart on S3).
const SINGLE_PUT_MAX: usize = 64 * 1024 * 1024;

/// One chunk going into a pack.
#[derive(Debug, Clone)]
pub(crate) struct PackInput {
    pub(crate) timestamp: Timestamp,
    pub(crate) audio: InputAudio,
}

/// The audio of a [`PackInput`].
#[derive(Debug, Clone)]
pub(crate) enum InputAudio {
    /// Decoded PCM and, when it was decoded from an Omi Opus container (an Opus pack's
    /// frame, an Omi `.opus` object) whose decoded length is exactly `pcm`, that container.
    /// An Opus pack stores the container as it is instead of encoding the decoded PCM again,
    /// so rewriting and compacting Opus audio loses nothing more each time.
    Pcm { pcm: Bytes, opus: Option<Bytes> },
    /// The payload another pack of the same format stored (see [`StoredPack`]), copied
    /// without decoding; `pcm_crc32c` is that pack's checksum of the PCM (plaintext only).
    Stored {
        payload: Bytes,
        plain_len: u32,
        pcm_crc32c: Option<u32>,
    },
}

impl PackInput {
    /// A chunk from PCM only.
    pub(crate) fn pcm(timestamp: Timestamp, pcm: Bytes) -> PackInput {
        PackInput::decoded(timestamp, pcm, None)
    }

    /// A chunk of decoded PCM and, when it decodes to exactly `pcm`, its Opus container.
    pub(crate) fn decoded(timestamp: Timestamp, pcm: Bytes, opus: Option<Bytes>) -> PackInput {
        PackInput {
            timestamp,
            audio: InputAudio::Pcm { pcm, opus },
        }
    }

    /// PCM bytes the chunk decodes to.
    pub(crate) fn plain_len(&self) -> u64 {
        match &self.audio {
            InputAudio::Pcm { pcm, .. } => pcm.len() as u64,
            InputAudio::Stored { plain_len, .. } => u64::from(*plain_len),
        }
    }

    /// Adds the chunk to `encoder`: a stored payload as it is; an Opus container unchanged
    /// when `copy_opus` (the pack is Opus) and there is one; else its PCM.
    fn push(&self, encoder: &mut PackEncoder, copy_opus: bool) -> Result<Vec<u8>, PackError> {
        match &self.audio {
            InputAudio::Stored {
                payload,
                plain_len,
                pcm_crc32c,
            } => encoder.push_stored(self.timestamp, payload, *plain_len, *pcm_crc32c),
            InputAudio::Pcm {
                pcm,
                opus: Some(container),
            } if copy_opus => encoder.push_encoded_frame(
                self.timestamp,
                container,
                u32::try_from(pcm.len()).unwrap_or(u32::MAX),
            ),
            InputAudio::Pcm { pcm, .. } => encoder.push_chunk(self.timestamp, pcm),
        }
    }

    /// Chunk `i` of `pack` as it goes into another pack of the same format, undecoded.
    pub(crate) fn stored(pack: &StoredPack, i: usize) -> PackInput {
        let entry = &pack.index().entries()[i];
        PackInput {
            timestamp: entry.start,
            audio: InputAudio::Stored {
                payload: pack.payload(i).clone(),
                plain_len: entry.plain_len,
                pcm_crc32c: (!pack.sealed()).then_some(entry.crc32c),
            },
        }
    }
}

/// What [`ChunkService::rewrite_pack_without`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Rewrite {
    /// No chunk matched: nothing written, keep the pack.
    Unchanged,
    /// Every chunk matched: nothing written, delete the pack.
    Emptied,
    /// The remaining chunks were written and verified here; delete the old pack.
    Written(String),
}

impl ChunkService {
    /// Writes `chunks` (sorted) as one pack, create-only; returns the path and whether it was
    /// written (false: an identical pack was already stored).
    pub(crate) async fn write_pack(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        chunks: &[Chunk],
        level: ProtectionLevel,
    ) -> Result<(String, bool), ServiceError> {
        let chunks: Vec<Chunk> = chunks
            .iter()
            .map(|c| Chunk::new(c.timestamp, trim_to_samples(c.pcm.clone())))
            .collect();
        let inputs: Vec<PackInput> = chunks
            .iter()
            .map(|c| PackInput::pcm(c.timestamp, c.pcm.clone()))
            .collect();
        let config = self.inner.config.pack;
        for (i, input) in inputs.iter().enumerate() {
            self.check_claim("(new pack)", || format!("chunk {i}"), input.plain_len())?;
        }
        let name = self.pack_name(&inputs, &config)?;
        let path = layout::chunk_path(uid, conversation, &name);
        let store = &self.inner.store;
        // A retry may only find what this write would have made: sealed for a user whose
        // packs must be sealed.
        let sealing = self.pack_sealing_at(level);
        if store.stat(&path).await?.is_some() {
            self.verify_pack(uid, conversation, &path, &chunks, sealing)
                .await?;
            // Found, not written: its writer may have died between rename and sync.
            store.make_durable(&path).await?;
            return Ok((path, false));
        }
        match self
            .stream_pack(uid, conversation, &path, &inputs, level, config)
            .await
        {
            Ok(()) => Ok((path, true)),
            Err(ServiceError::Store(StoreError::AlreadyExists { .. })) => self
                .verify_pack(uid, conversation, &path, &chunks, sealing)
                .await
                .map(|()| (path, false)),
            Err(other) => Err(other),
        }
    }

    /// The name of a pack holding `chunks` in the format `config`: first start to the end of
    /// the last chunk's audio.
    pub(crate) fn pack_name(
        &self,
        chunks: &[PackInput],
        config: &PackConfig,
    ) -> Result<ObjectName, ServiceError> {
        let (Some(first), Some(last)) = (chunks.first(), chunks.last()) else {
            return Err(ServiceError::InvalidInput(
                "a pack needs at least one chunk".into(),
            ));
        };
        let block = 2 * u32::from(config.channels.max(1));
        let samples = u32::try_from(last.plain_len() / u64::from(block))
            .map_err(|_| ServiceError::InvalidInput("chunk too long for a pack".into()))?;
        let end = pack_name_end(last.timestamp, samples.max(1), config.sample_rate)
            .ok_or_else(|| ServiceError::InvalidInput("pack end out of range".into()))?;
        ObjectName::pack(first.timestamp, end)
            .map_err(|e| ServiceError::InvalidInput(e.to_string()))
    }

    /// Encodes a pack in the format `config` to `path` (in `conversation` of `uid`, which a
    /// sealed pack's key is bound to), create-only: with one PUT up to [`SINGLE_PUT_MAX`] bytes
    /// of input, else streamed (one write per chunk, then index and trailer); a failure leaves
    /// no object.
    pub(crate) async fn stream_pack(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        path: &str,
        chunks: &[PackInput],
        level: ProtectionLevel,
        config: PackConfig,
    ) -> Result<(), ServiceError> {
        let mode = PutMode::CreateOnly;
        let sealer = if level.service_encrypts() {
            let keyring =
                self.inner
                    .keyring
                    .as_ref()
                    .ok_or_else(|| ServiceError::NoKeyMaterial {
                        uid: uid.to_string(),
                    })?;
            let sealer = keyring
                .pack_sealer(PackPlace::new(uid.as_str(), conversation.as_str()))
                .map_err(|source| ServiceError::Crypto {
                    path: path.to_owned(),
                    source,
                })?;
            Some(Box::new(sealer) as Box<dyn chunk_format::pack::SegmentSealer>)
        } else {
            None
        };
        let mut encoder = match config.codec {
            Codec::Opus => {
                if !OpusBackend::Libopus.can_encode() {
                    let error = OpusError::OpusUnavailable {
                        operation: OpusOperation::Encode,
                        backend: OpusBackend::Libopus,
                    };
                    return Err(ServiceError::InvalidInput(format!(
                        "{path}: the configuration asks for Opus packs: {error}"
                    )));
                }
                PackEncoder::with_codec(config, sealer, Box::new(OmiOpusCodec))
            }
            _ => PackEncoder::new(config, sealer),
        }
        .map_err(|e| pack_error(path, e))?;
        let copy_opus = config.codec == Codec::Opus;
        let input: u64 = chunks.iter().map(PackInput::plain_len).sum();
        if input <= SINGLE_PUT_MAX as u64 {
            // The batch is in memory already: encode it whole and store it with one PUT, so a
            // 10-minute pack is one Class A request on S3 rather than a multipart upload. The
            // encode (compression, sealing) runs on the CPU pool, so the runtime's workers stay
            // free for the pushes and reads of everyone else.
            let owned = chunks.to_vec();
            let name = path.to_owned();
            let object = crate::read::decode::on_cpu_pool(move || {
                let mut object = Vec::with_capacity(input as usize / 2 + 4096);
                for chunk in &owned {
                    let bytes = chunk
                        .push(&mut encoder, copy_opus)
                        .map_err(|error| ServiceError::InvalidInput(format!("{name}: {error}")))?;
                    object.extend_from_slice(&bytes);
                }
                object.extend(encoder.finish().map_err(|e| pack_error(&name, e))?);
                Ok(object)
            })
            .await
            .unwrap_or_else(|_panic| {
                Err(ServiceError::InvalidInput(format!(
                    "{path}: encoding the pack panicked"
                )))
            })?;
            self.inner.store.put(path, object, mode).await?;
            return Ok(());
        }
        let mut writer = self.inner.store.writer(path, mode).await?;
        for chunk in chunks {
            let bytes = match chunk.push(&mut encoder, copy_opus) {
                Ok(bytes) => bytes,
                Err(error) => {
                    abort(writer).await;
                    return Err(ServiceError::InvalidInput(format!("{path}: {error}")));
                }
            };
            writer.write(Bytes::from(bytes)).await?;
        }
        let tail = match encoder.finish() {
            Ok(tail) => tail,
            Err(error) => {
                abort(writer).await;
                return Err(pack_error(path, error));
            }
        };
        writer.write(Bytes::from(tail)).await?;
        writer.close().await?;
        Ok(())
    }

    /// Succeeds if the pack at `path` holds exactly `chunks` (same starts, same audio; for an
    /// Opus pack, the audio Opus makes of them), decoding one chunk at a time.
    async fn verify_pack(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        path: &str,
        chunks: &[Chunk],
        sealing: PackSealing,
    ) -> Result<(), ServiceError> {
        let stored = self
            .read_pack_stored(uid, conversation, path, sealing, OpenFor::Reading, 0)
            .await?;
        let lossy = stored.index().header().codec().is_lossy();
        let conflict = || ServiceError::Conflict {
            path: path.to_owned(),
        };
        if stored.len() != chunks.len() {
            return Err(conflict());
        }
        for (i, chunk) in chunks.iter().enumerate() {
            let entry = &stored.index().entries()[i];
            if entry.start != chunk.timestamp || entry.plain_len as usize != chunk.pcm.len() {
                return Err(conflict());
            }
            let pcm = stored.decode(i)?;
            let same = if lossy {
                let made = encode_omi_opus(&chunk.pcm)
                    .and_then(|container| decode_omi_opus(&container))
                    .map_err(|error| ServiceError::decode(path, error))?;
                pcm[..] == made[..]
            } else {
                pcm[..] == chunk.pcm[..]
            };
            if !same {
                return Err(conflict());
            }
        }
        Ok(())
    }

    /// Rewrites the pack at `path` without the chunks `remove` selects: the kept chunks are
    /// copied as stored (never decoded whole, never re-encoded) into a new pack of the same
    /// format and sealing, written create-only and read back before the old one is deleted
    /// (never the other order; a crash in between leaves a duplicate that downloads trim as
    /// overlap). The caller deletes the old pack unless the outcome is [`Rewrite::Unchanged`].
    pub(crate) async fn rewrite_pack_without(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        path: &str,
        remove: impl Fn(Timestamp, Timestamp) -> bool,
        sealing: PackSealing,
    ) -> Result<Rewrite, ServiceError> {
        let pack = self
            .read_pack_stored(uid, conversation, path, sealing, OpenFor::Reading, 0)
            .await?;
        let kept: Vec<PackInput> = (0..pack.len())
            .filter(|&i| {
                let (start, end) = pack.span(i);
                !remove(start, end)
            })
            .map(|i| PackInput::stored(&pack, i))
            .collect();
        if kept.len() == pack.len() {
            return Ok(Rewrite::Unchanged);
        }
        if kept.is_empty() {
            return Ok(Rewrite::Emptied);
        }
        let level = if pack.sealed() {
            ProtectionLevel::Enhanced
        } else {
            ProtectionLevel::Standard
        };
        // The rewrite keeps the pack's own codec, rate and channels, whatever the service
        // writes: its payloads are copied as they are.
        let config = pack.config(&self.inner.config.pack);
        drop(pack);
        let new_path = self
            .write_fresh_pack(uid, conversation, &kept, level, config)
            .await?;
        Ok(Rewrite::Written(new_path))
    }

    /// Writes `chunks` as a new pack under a name no object has yet (bumping the end by a
    /// millisecond while the natural name is taken — END stays an upper bound of the audio),
    /// then reads it back and checks it, one chunk at a time, before returning its path: same
    /// format, starts and lengths, every frame decoding and matching its checksum, copied
    /// payloads and given Opus containers stored unchanged, and lossless PCM identical.
    pub(crate) async fn write_fresh_pack(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        chunks: &[PackInput],
        level: ProtectionLevel,
        config: PackConfig,
    ) -> Result<String, ServiceError> {
        let natural = self.pack_name(chunks, &config)?;
        let mut end = natural.end();
        let path = loop {
            let name = ObjectName::pack(natural.start(), end)
                .map_err(|e| ServiceError::InvalidInput(e.to_string()))?;
            let path = layout::chunk_path(uid, conversation, &name);
            if self.inner.store.stat(&path).await?.is_none() {
                break path;
            }
            end = end.saturating_add_millis(1);
        };
        self.stream_pack(uid, conversation, &path, chunks, level, config)
            .await?;
        let sealing = self.pack_sealing_at(level);
        let back = self
            .read_pack_stored(uid, conversation, &path, sealing, OpenFor::Reading, 0)
            .await?;
        let header = back.index().header();
        let lossy = header.codec().is_lossy();
        let mut same = header.sample_rate() == config.sample_rate
            && header.channels() == config.channels
            && back.len() == chunks.len();
        for (i, chunk) in chunks.iter().enumerate() {
            if !same {
                break;
            }
            let entry = &back.index().entries()[i];
            same =
                entry.start == chunk.timestamp && u64::from(entry.plain_len) == chunk.plain_len();
            // Decoding checks the frame (zstd, CRC-32C or authentication, Opus length).
            let pcm = back.decode(i)?;
            same &= match &chunk.audio {
                InputAudio::Stored { payload, .. } => *back.payload(i) == *payload,
                InputAudio::Pcm { pcm: given, opus } => {
                    let copied = match (header.codec() == Codec::Opus, opus) {
                        (true, Some(given)) => *back.payload(i) == *given,
                        _ => true,
                    };
                    copied && (lossy || pcm[..] == given[..])
                }
            };
        }
        if !same {
            return Err(ServiceError::decode(&path, DecodeError::ReadBackDiffers));
        }
        Ok(path)
    }
}

/// Aborts a pack writer, logging (never failing) when the abort itself fails.
async fn abort(writer: chunk_store::ObjectWriter) {
    let path = writer.path().to_owned();
    if let Err(error) = writer.abort().await {
        tracing::warn!(%path, %error, "aborting a pack writer failed");
    }
}
