//! Packs in the service: writing a batch as a pack, reading a pack's index with ranged reads,
//! fetching only the frames a request needs, and rewriting a pack without some chunks.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use chunk_crypto::pack::{PackOpener, PackPlace};
use chunk_format::pack::{
    Codec, ENTRY_LEN, FrameCodec, INDEX_FIXED_LEN, PackConfig, PackEncoder, PackError, PackIndex,
    PackTail, TRAILER_LEN, pack_name_end,
};
use chunk_format::{ObjectKind, ObjectName, Timestamp};
use chunk_store::{ConversationId, PutMode, StoreError, UserId, layout};

use crate::codec::opus::{
    OmiOpusCodec, OpusBackend, OpusError, OpusOperation, decode_omi_opus, encode_omi_opus,
};
use crate::decode::trim_to_samples;
use crate::level::ProtectionLevel;
use crate::policy::{OpenFor, PackSealing};
use crate::upload::Chunk;
use crate::{ChunkService, ServiceError};

/// Largest batch (raw PCM bytes) encoded in memory and stored with one PUT; larger batches
/// stream through the store's writer (multipart on S3).
const SINGLE_PUT_MAX: usize = 64 * 1024 * 1024;

/// Largest span of adjacent frames fetched with one ranged read.
const MAX_COALESCED_READ: u64 = 4 * 1024 * 1024;

/// A pack read whole and decoded.
#[derive(Debug)]
pub(crate) struct WholePack {
    pub(crate) sealed: bool,
    /// Sample rate and channels from the pack's header.
    pub(crate) sample_rate: u32,
    pub(crate) channels: u8,
    pub(crate) chunks: Vec<PackChunk>,
}

/// One decoded chunk of a pack.
#[derive(Debug)]
pub(crate) struct PackChunk {
    pub(crate) start: Timestamp,
    pub(crate) pcm: Bytes,
    /// The stored frame (unsealed) of an Opus pack: an Omi Opus container.
    pub(crate) opus: Option<Bytes>,
}

/// A pack read whole with its chunks still encoded: the opened payload of every frame (raw
/// PCM, a zstd frame or an Omi Opus container), about its stored size in memory. A rewrite
/// copies payloads without decoding them; checks decode one chunk at a time.
#[derive(Debug)]
pub(crate) struct StoredPack {
    path: String,
    index: PackIndex,
    payloads: Vec<Bytes>,
}

impl StoredPack {
    /// Whether the pack is sealed.
    pub(crate) fn sealed(&self) -> bool {
        self.index.header().is_encrypted()
    }

    /// The pack's format: its own codec, rate and channels, with the service's zstd level.
    fn config(&self, service: &PackConfig) -> PackConfig {
        let header = self.index.header();
        PackConfig {
            codec: header.codec(),
            sample_rate: header.sample_rate(),
            channels: header.channels(),
            ..*service
        }
    }

    /// Number of chunks.
    pub(crate) fn len(&self) -> usize {
        self.payloads.len()
    }

    /// Start and end of chunk `i`.
    fn span(&self, i: usize) -> (Timestamp, Timestamp) {
        let entry = &self.index.entries()[i];
        (entry.start, self.index.chunk_end(entry))
    }

    /// Chunk `i` as it goes into another pack of the same format, undecoded.
    fn stored_input(&self, i: usize) -> PackInput {
        let entry = &self.index.entries()[i];
        PackInput {
            timestamp: entry.start,
            audio: InputAudio::Stored {
                payload: self.payloads[i].clone(),
                plain_len: entry.plain_len,
                pcm_crc32c: (!self.sealed()).then_some(entry.crc32c),
            },
        }
    }

    /// Decodes chunk `i` (its claimed length was checked against the limit when read).
    pub(crate) fn decode(&self, i: usize) -> Result<Bytes, ServiceError> {
        let codec = self.index.header().codec();
        self.index
            .decode_payload(i, &self.payloads[i], frame_codec(codec))
            .map(Bytes::from)
            .map_err(|e| pack_error(&self.path, e))
    }

    /// Decodes every chunk: what compaction merges (bounded by its group's duration).
    fn decode_all(self) -> Result<WholePack, ServiceError> {
        let header = self.index.header();
        let codec = header.codec();
        let chunks = (0..self.len())
            .map(|i| {
                Ok(PackChunk {
                    start: self.span(i).0,
                    pcm: self.decode(i)?,
                    opus: (codec == Codec::Opus).then(|| self.payloads[i].clone()),
                })
            })
            .collect::<Result<_, ServiceError>>()?;
        Ok(WholePack {
            sealed: header.is_encrypted(),
            sample_rate: header.sample_rate(),
            channels: header.channels(),
            chunks,
        })
    }
}

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

/// A pack whose index was read (and authenticated, when sealed).
#[derive(Debug, Clone)]
pub(crate) struct LoadedPack {
    pub(crate) path: String,
    pub(crate) index: Arc<PackIndex>,
    pub(crate) opener: Option<Arc<PackOpener>>,
}

impl LoadedPack {
    /// Start and end (exclusive) of chunk `i` in milliseconds.
    pub(crate) fn chunk_span(&self, i: usize) -> Option<(u64, u64)> {
        let entry = self.index.entries().get(i)?;
        Some((
            entry.start.as_millis(),
            self.index.chunk_end(entry).as_millis(),
        ))
    }

    /// Bytes stored for chunks `range`.
    pub(crate) fn stored_bytes(&self, range: &Range<usize>) -> u64 {
        self.index.entries()[range.clone()]
            .iter()
            .map(|e| u64::from(e.stored_len))
            .sum()
    }

    /// Splits `chunks` (sorted, unique) into runs of adjacent chunks, each one ranged read of
    /// at most [`MAX_COALESCED_READ`] stored bytes that decodes to at most
    /// [`MAX_COALESCED_READ`] bytes (a single chunk larger than that is a run of its own).
    /// Linear in the number of chunks: each run carries its running sums.
    pub(crate) fn read_runs(&self, chunks: &[usize]) -> Vec<Range<usize>> {
        let entries = self.index.entries();
        let mut runs: Vec<Range<usize>> = Vec::new();
        // (stored, decoded) bytes of the last run.
        let mut sums = (0u64, 0u64);
        for &i in chunks {
            let Some(entry) = entries.get(i) else {
                continue;
            };
            let (stored, plain) = (u64::from(entry.stored_len), u64::from(entry.plain_len));
            match runs.last_mut() {
                Some(run)
                    if run.end == i
                        && sums.0 + stored <= MAX_COALESCED_READ
                        && sums.1 + plain <= MAX_COALESCED_READ =>
                {
                    run.end = i + 1;
                    sums = (sums.0 + stored, sums.1 + plain);
                }
                _ => {
                    runs.push(i..i + 1);
                    sums = (stored, plain);
                }
            }
        }
        runs
    }
}

/// The frame codec a pack with codec `codec` is decoded with: Omi's Opus for
/// [`Codec::Opus`], none for the codecs the container implements itself.
fn frame_codec(codec: Codec) -> Option<&'static dyn FrameCodec> {
    match codec {
        Codec::Opus => Some(&OmiOpusCodec),
        _ => None,
    }
}

fn pack_error(path: &str, error: PackError) -> ServiceError {
    ServiceError::Decode {
        path: path.to_owned(),
        reason: error.to_string(),
    }
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
            // 10-minute pack is one Class A request on S3 rather than a multipart upload.
            let mut object = Vec::with_capacity(input as usize / 2 + 4096);
            for chunk in chunks {
                let bytes = chunk
                    .push(&mut encoder, copy_opus)
                    .map_err(|error| ServiceError::InvalidInput(format!("{path}: {error}")))?;
                object.extend_from_slice(&bytes);
            }
            object.extend(encoder.finish().map_err(|e| pack_error(path, e))?);
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
            .read_pack_stored(uid, conversation, path, sealing, OpenFor::Reading)
            .await?;
        let lossy = stored.index.header().codec().is_lossy();
        let conflict = || ServiceError::Conflict {
            path: path.to_owned(),
        };
        if stored.len() != chunks.len() {
            return Err(conflict());
        }
        for (i, chunk) in chunks.iter().enumerate() {
            let entry = &stored.index.entries()[i];
            if entry.start != chunk.timestamp || entry.plain_len as usize != chunk.pcm.len() {
                return Err(conflict());
            }
            let pcm = stored.decode(i)?;
            let same = if lossy {
                let made = encode_omi_opus(&chunk.pcm)
                    .and_then(|container| decode_omi_opus(&container))
                    .map_err(|error| ServiceError::Decode {
                        path: path.to_owned(),
                        reason: format!("cannot compare with the stored Opus pack: {error}"),
                    })?;
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

    /// Reads a whole pack without decoding it: index (authenticated when sealed, refused
    /// when plaintext and `sealing` requires a seal), the name checked against the index,
    /// every chunk's claimed length checked against the limit, every frame opened.
    pub(crate) async fn read_pack_stored(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        path: &str,
        sealing: PackSealing,
        purpose: OpenFor,
    ) -> Result<StoredPack, ServiceError> {
        let name = path
            .rsplit('/')
            .next()
            .and_then(|name| name.parse::<ObjectName>().ok())
            .filter(|name| name.kind() == ObjectKind::Pack)
            .ok_or_else(|| ServiceError::Decode {
                path: path.to_owned(),
                reason: "not a pack name".to_owned(),
            })?;
        let object = self.inner.store.read(path).await?;
        let tail = PackTail::new(&object, object.len() as u64).map_err(|e| pack_error(path, e))?;
        let place = PackPlace::new(uid.as_str(), conversation.as_str());
        let opener = self.pack_opener(place, path, tail.header(), sealing, purpose)?;
        let opener = opener.as_deref().map(as_opener);
        let index = PackIndex::from_object(&object, opener).map_err(|e| pack_error(path, e))?;
        check_name(path, &name, &index)?;
        self.check_chunk_claims(path, &index, 0..index.len())?;
        let payloads = (0..index.len())
            .map(|i| {
                let range = index.frame_range(i).unwrap_or(0..0);
                let frame = index
                    .frame_bytes(i, &object)
                    .map_err(|e| pack_error(path, e))?;
                match index
                    .open_frame(i, frame, opener)
                    .map_err(|e| pack_error(path, e))?
                {
                    // A plaintext payload is the frame itself: share the object's buffer.
                    std::borrow::Cow::Borrowed(_) => {
                        Ok(object.slice(range.start as usize..range.end as usize))
                    }
                    std::borrow::Cow::Owned(opened) => Ok(Bytes::from(opened)),
                }
            })
            .collect::<Result<_, ServiceError>>()?;
        Ok(StoredPack {
            path: path.to_owned(),
            index,
            payloads,
        })
    }

    /// Reads a whole pack and decodes every chunk, to re-seal it: compaction (sources are
    /// shorter than its target, and the name bounds the audio, so this is bounded by the
    /// group's duration). Retired keys open it.
    pub(crate) async fn read_pack_chunks(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        path: &str,
        sealing: PackSealing,
    ) -> Result<WholePack, ServiceError> {
        self.read_pack_stored(uid, conversation, path, sealing, OpenFor::Resealing)
            .await?
            .decode_all()
    }

    /// Refuses chunks `range` of a pack when one claims more decoded bytes than the limit.
    fn check_chunk_claims(
        &self,
        path: &str,
        index: &PackIndex,
        range: Range<usize>,
    ) -> Result<(), ServiceError> {
        for i in range {
            let claimed = index.entries().get(i).map_or(0, |e| u64::from(e.plain_len));
            self.check_claim(path, || format!("chunk {i}"), claimed)?;
        }
        Ok(())
    }

    /// The opener of a pack found at `path`, which is `place`'s: a version-2 pack opens only
    /// there.
    fn pack_opener(
        &self,
        place: PackPlace<'_>,
        path: &str,
        header: &chunk_format::pack::PackHeader,
        sealing: PackSealing,
        purpose: OpenFor,
    ) -> Result<Option<Arc<PackOpener>>, ServiceError> {
        sealing.check(path, header.is_encrypted())?;
        let Some(seal) = header.seal() else {
            return Ok(None);
        };
        let keyring = self
            .inner
            .keyring
            .as_ref()
            .ok_or_else(|| ServiceError::Decode {
                path: path.to_owned(),
                reason: "sealed pack but the service has no key material".to_owned(),
            })?;
        match purpose {
            OpenFor::Reading => keyring.pack_opener(place, seal),
            OpenFor::Resealing => keyring.pack_opener_to_reseal(place, seal),
        }
        .map(|opener| Some(Arc::new(opener)))
        .map_err(|source| ServiceError::Crypto {
            path: path.to_owned(),
            source,
        })
    }

    /// Reads a pack's index with ranged reads: one read of the tail sized from the name's
    /// duration (trailer plus an index of 5 s chunks: 3.9 KiB for 10 minutes), and one more
    /// only if the index is larger (chunks shorter than 5 s).
    pub(crate) async fn load_pack(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        path: &str,
        size: u64,
        name: &ObjectName,
        sealing: PackSealing,
    ) -> Result<LoadedPack, ServiceError> {
        let store = &self.inner.store;
        let duration_s = name.end().millis_since(name.start()).max(0) as u64 / 1000;
        let guess = TRAILER_LEN as u64
            + INDEX_FIXED_LEN as u64
            + 16
            + ENTRY_LEN as u64 * (duration_s / 5 + 1);
        let tail_len = guess.min(size);
        let mut tail = store.read_range(path, size - tail_len..size).await?;
        let parsed = PackTail::new(&tail, size).map_err(|e| pack_error(path, e))?;
        let place = PackPlace::new(uid.as_str(), conversation.as_str());
        let opener = self.pack_opener(place, path, parsed.header(), sealing, OpenFor::Reading)?;
        let index = match parsed.index(opener.as_deref().map(as_opener)) {
            Ok(index) => index,
            Err(PackError::NeedMore { from_offset }) => {
                tail = store.read_range(path, from_offset..size).await?;
                PackTail::new(&tail, size)
                    .and_then(|t| t.index(opener.as_deref().map(as_opener)))
                    .map_err(|e| pack_error(path, e))?
            }
            Err(error) => return Err(pack_error(path, error)),
        };
        check_name(path, name, &index)?;
        Ok(LoadedPack {
            path: path.to_owned(),
            index: Arc::new(index),
            opener,
        })
    }

    /// Fetches chunks `run` of a loaded pack with one ranged read and decodes each; a chunk
    /// claiming more than the limit is refused before the read.
    pub(crate) async fn read_pack_run(
        &self,
        pack: &LoadedPack,
        run: Range<usize>,
    ) -> Result<Vec<(u64, Bytes)>, ServiceError> {
        let path = &pack.path;
        self.check_chunk_claims(path, &pack.index, run.clone())?;
        let entries = &pack.index.entries()[run.clone()];
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(Vec::new());
        };
        let span = first.offset..last.offset + u64::from(last.stored_len);
        let bytes = self.inner.store.read_range(path, span.clone()).await?;
        run.map(|i| {
            let entry = &pack.index.entries()[i];
            let from = (entry.offset - span.start) as usize;
            let frame = bytes
                .get(from..from + entry.stored_len as usize)
                .ok_or_else(|| ServiceError::Decode {
                    path: path.clone(),
                    reason: format!("short ranged read for chunk {i}"),
                })?;
            let pcm = pack
                .index
                .decode_frame_with(
                    i,
                    frame,
                    pack.opener.as_deref().map(as_opener),
                    frame_codec(pack.index.header().codec()),
                )
                .map_err(|e| pack_error(path, e))?;
            Ok((entry.start.as_millis(), Bytes::from(pcm)))
        })
        .collect()
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
            .read_pack_stored(uid, conversation, path, sealing, OpenFor::Reading)
            .await?;
        let kept: Vec<PackInput> = (0..pack.len())
            .filter(|&i| {
                let (start, end) = pack.span(i);
                !remove(start, end)
            })
            .map(|i| pack.stored_input(i))
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
            .read_pack_stored(uid, conversation, &path, sealing, OpenFor::Reading)
            .await?;
        let header = back.index.header();
        let lossy = header.codec().is_lossy();
        let mut same = header.sample_rate() == config.sample_rate
            && header.channels() == config.channels
            && back.len() == chunks.len();
        for (i, chunk) in chunks.iter().enumerate() {
            if !same {
                break;
            }
            let entry = &back.index.entries()[i];
            same =
                entry.start == chunk.timestamp && u64::from(entry.plain_len) == chunk.plain_len();
            // Decoding checks the frame (zstd, CRC-32C or authentication, Opus length).
            let pcm = back.decode(i)?;
            same &= match &chunk.audio {
                InputAudio::Stored { payload, .. } => back.payloads[i] == *payload,
                InputAudio::Pcm { pcm: given, opus } => {
                    let copied = match (header.codec() == Codec::Opus, opus) {
                        (true, Some(given)) => back.payloads[i] == *given,
                        _ => true,
                    };
                    copied && (lossy || pcm[..] == given[..])
                }
            };
        }
        if !same {
            return Err(ServiceError::Decode {
                path,
                reason: "the pack read back differs from what was written".to_owned(),
            });
        }
        Ok(path)
    }
}

/// Refuses a pack whose index does not match its name: the same START, and an END that is
/// the index's end or (a rewritten pack) a bound past it.
fn check_name(path: &str, name: &ObjectName, index: &PackIndex) -> Result<(), ServiceError> {
    if index.object_name().ok().as_ref() == Some(name) || name_bounds(name, index) {
        return Ok(());
    }
    Err(ServiceError::Decode {
        path: path.to_owned(),
        reason: format!(
            "the pack's index covers {}..{} but its name says {name}",
            index.start(),
            index.end()
        ),
    })
}

/// Whether a name is a valid upper bound for an index (a rewritten pack may have a bumped END).
fn name_bounds(name: &ObjectName, index: &PackIndex) -> bool {
    name.kind() == ObjectKind::Pack && name.start() == index.start() && name.end() >= index.end()
}

fn as_opener(opener: &PackOpener) -> &dyn chunk_format::pack::SegmentOpener {
    opener
}

async fn abort(writer: chunk_store::ObjectWriter) {
    let path = writer.path().to_owned();
    if let Err(error) = writer.abort().await {
        tracing::warn!(%path, %error, "aborting a pack writer failed");
    }
}
