//! Packs in the service: writing a batch as a pack, reading a pack's index with ranged reads,
//! fetching only the frames a request needs, and rewriting a pack without some chunks.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use chunk_crypto::pack::{PackOpener, SealParams};
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
    pub(crate) codec: Codec,
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
    pub(crate) end: Timestamp,
    pub(crate) pcm: Bytes,
    /// The stored frame (unsealed) of an Opus pack: an Omi Opus container.
    pub(crate) opus: Option<Bytes>,
}

/// One chunk going into a pack: its PCM and, when it was decoded from an Omi Opus container
/// (an Opus pack's frame, an Omi `.opus` object) whose decoded length is exactly `pcm`, that
/// container. An Opus pack stores the container as it is instead of encoding the decoded PCM
/// again, so rewriting and compacting Opus audio loses nothing more each time.
#[derive(Debug, Clone)]
pub(crate) struct PackInput {
    pub(crate) timestamp: Timestamp,
    pub(crate) pcm: Bytes,
    pub(crate) opus: Option<Bytes>,
}

impl PackInput {
    /// A chunk from PCM only.
    pub(crate) fn pcm(timestamp: Timestamp, pcm: Bytes) -> PackInput {
        PackInput {
            timestamp,
            pcm,
            opus: None,
        }
    }

    /// Adds the chunk to `encoder`: its Opus container unchanged when `copy_opus` (the pack
    /// is Opus) and there is one, else its PCM.
    fn push(&self, encoder: &mut PackEncoder, copy_opus: bool) -> Result<Vec<u8>, PackError> {
        match &self.opus {
            Some(container) if copy_opus => encoder.push_encoded_frame(
                self.timestamp,
                container,
                u32::try_from(self.pcm.len()).unwrap_or(u32::MAX),
            ),
            _ => encoder.push_chunk(self.timestamp, &self.pcm),
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

/// Whether `stored` (decoded from a pack of codec `codec`) holds exactly `chunks`: same starts,
/// same PCM — for a lossy codec, the PCM the codec makes of the chunk (`decode(encode(pcm))`,
/// deterministic for Omi's Opus with libopus), so a different batch is still told apart.
fn holds_chunks(codec: Codec, stored: &[PackChunk], chunks: &[Chunk]) -> Result<bool, OpusError> {
    if stored.len() != chunks.len() {
        return Ok(false);
    }
    for (PackChunk { start, pcm, .. }, chunk) in stored.iter().zip(chunks) {
        if *start != chunk.timestamp || pcm.len() != chunk.pcm.len() {
            return Ok(false);
        }
        let same = if codec.is_lossy() {
            pcm[..] == decode_omi_opus(&encode_omi_opus(&chunk.pcm)?)?[..]
        } else {
            pcm[..] == chunk.pcm[..]
        };
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
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
        let name = self.pack_name(&inputs, &config)?;
        let path = layout::chunk_path(uid, conversation, &name);
        let store = &self.inner.store;
        if store.stat(&path).await?.is_some() {
            self.verify_pack(uid, &path, &chunks).await?;
            // Found, not written: its writer may have died between rename and sync.
            store.make_durable(&path).await?;
            return Ok((path, false));
        }
        match self
            .stream_pack(uid, &path, &inputs, level, PutMode::CreateOnly, config)
            .await
        {
            Ok(()) => Ok((path, true)),
            Err(ServiceError::Store(StoreError::AlreadyExists { .. })) => self
                .verify_pack(uid, &path, &chunks)
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
        let samples = u32::try_from(last.pcm.len() as u64 / u64::from(block))
            .map_err(|_| ServiceError::InvalidInput("chunk too long for a pack".into()))?;
        let end = pack_name_end(last.timestamp, samples.max(1), config.sample_rate)
            .ok_or_else(|| ServiceError::InvalidInput("pack end out of range".into()))?;
        ObjectName::pack(first.timestamp, end)
            .map_err(|e| ServiceError::InvalidInput(e.to_string()))
    }

    /// Encodes a pack in the format `config` to `path`: with one PUT up to [`SINGLE_PUT_MAX`]
    /// bytes of input, else streamed (one write per chunk, then index and trailer); a failure
    /// leaves no object.
    pub(crate) async fn stream_pack(
        &self,
        uid: &UserId,
        path: &str,
        chunks: &[PackInput],
        level: ProtectionLevel,
        mode: PutMode,
        config: PackConfig,
    ) -> Result<(), ServiceError> {
        let sealer = if level.service_encrypts() {
            let keyring =
                self.inner
                    .keyring
                    .as_ref()
                    .ok_or_else(|| ServiceError::NoKeyMaterial {
                        uid: uid.to_string(),
                    })?;
            let sealer =
                keyring
                    .pack_sealer(uid.as_str())
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
        let input: usize = chunks.iter().map(|c| c.pcm.len()).sum();
        if input <= SINGLE_PUT_MAX {
            // The batch is in memory already: encode it whole and store it with one PUT, so a
            // 10-minute pack is one Class A request on S3 rather than a multipart upload.
            let mut object = Vec::with_capacity(input / 2 + 4096);
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
    /// Opus pack, the audio Opus makes of them).
    async fn verify_pack(
        &self,
        uid: &UserId,
        path: &str,
        chunks: &[Chunk],
    ) -> Result<(), ServiceError> {
        let stored = self.read_pack_chunks(uid, path).await?;
        let identical = holds_chunks(stored.codec, &stored.chunks, chunks).map_err(|error| {
            ServiceError::Decode {
                path: path.to_owned(),
                reason: format!("cannot compare with the stored Opus pack: {error}"),
            }
        })?;
        if identical {
            Ok(())
        } else {
            Err(ServiceError::Conflict {
                path: path.to_owned(),
            })
        }
    }

    /// Reads a whole pack and decodes every chunk.
    pub(crate) async fn read_pack_chunks(
        &self,
        uid: &UserId,
        path: &str,
    ) -> Result<WholePack, ServiceError> {
        let object = self.inner.store.read(path).await?;
        let tail = PackTail::new(&object, object.len() as u64).map_err(|e| pack_error(path, e))?;
        let opener = self.pack_opener(uid, path, tail.header())?;
        let index = PackIndex::from_object(&object, opener.as_deref().map(as_opener))
            .map_err(|e| pack_error(path, e))?;
        let codec = index.header().codec();
        let chunks = (0..index.len())
            .map(|i| {
                let frame = index
                    .frame_bytes(i, &object)
                    .map_err(|e| pack_error(path, e))?;
                let payload = index
                    .open_frame(i, frame, opener.as_deref().map(as_opener))
                    .map_err(|e| pack_error(path, e))?;
                let pcm = index
                    .decode_payload(i, &payload, frame_codec(codec))
                    .map_err(|e| pack_error(path, e))?;
                let entry = &index.entries()[i];
                Ok(PackChunk {
                    start: entry.start,
                    end: index.chunk_end(entry),
                    pcm: Bytes::from(pcm),
                    opus: (codec == Codec::Opus).then(|| Bytes::from(payload.into_owned())),
                })
            })
            .collect::<Result<_, ServiceError>>()?;
        Ok(WholePack {
            codec,
            sealed: index.header().is_encrypted(),
            sample_rate: index.header().sample_rate(),
            channels: index.header().channels(),
            chunks,
        })
    }

    fn pack_opener(
        &self,
        uid: &UserId,
        path: &str,
        header: &chunk_format::pack::PackHeader,
    ) -> Result<Option<Arc<PackOpener>>, ServiceError> {
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
        keyring
            .pack_opener(uid.as_str(), &SealParams::from(*seal))
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
        path: &str,
        size: u64,
        name: &ObjectName,
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
        let opener = self.pack_opener(uid, path, parsed.header())?;
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
        if index.object_name().ok().as_ref() != Some(name) && !name_bounds(name, &index) {
            return Err(ServiceError::Decode {
                path: path.to_owned(),
                reason: format!(
                    "the pack's index covers {}..{} but its name says {name}",
                    index.start(),
                    index.end()
                ),
            });
        }
        Ok(LoadedPack {
            path: path.to_owned(),
            index: Arc::new(index),
            opener,
        })
    }

    /// Fetches chunks `run` of a loaded pack with one ranged read and decodes each.
    pub(crate) async fn read_pack_run(
        &self,
        pack: &LoadedPack,
        run: Range<usize>,
    ) -> Result<Vec<(u64, Bytes)>, ServiceError> {
        let path = &pack.path;
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

    /// Rewrites the pack at `entry` without the chunks `remove` selects: the new pack is
    /// written create-only and read back before the old one is deleted (never the other order;
    /// a crash in between leaves a duplicate that downloads trim as overlap). The caller
    /// deletes the old pack unless the outcome is [`Rewrite::Unchanged`].
    pub(crate) async fn rewrite_pack_without(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        path: &str,
        remove: impl Fn(Timestamp, Timestamp) -> bool,
    ) -> Result<Rewrite, ServiceError> {
        let mut pack = self.read_pack_chunks(uid, path).await?;
        let total = pack.chunks.len();
        let sealed = pack.sealed;
        let kept: Vec<PackInput> = std::mem::take(&mut pack.chunks)
            .into_iter()
            .filter(|c| !remove(c.start, c.end))
            .map(|c| PackInput {
                timestamp: c.start,
                pcm: c.pcm,
                opus: c.opus,
            })
            .collect();
        if kept.len() == total {
            return Ok(Rewrite::Unchanged);
        }
        if kept.is_empty() {
            return Ok(Rewrite::Emptied);
        }
        let level = if sealed {
            ProtectionLevel::Enhanced
        } else {
            ProtectionLevel::Standard
        };
        // The rewrite keeps the pack's own rate and channels, whatever the service writes.
        let config = PackConfig {
            sample_rate: pack.sample_rate,
            channels: pack.channels,
            ..self.inner.config.pack
        };
        let new_path = self
            .write_fresh_pack(uid, conversation, &kept, level, config)
            .await?;
        Ok(Rewrite::Written(new_path))
    }

    /// Writes `chunks` as a new pack under a name no object has yet (bumping the end by a
    /// millisecond while the natural name is taken — END stays an upper bound of the audio),
    /// then reads it back and checks it before returning its path (for a lossy codec: same
    /// starts and lengths, every frame decoding and matching its checksum, and every Opus
    /// container given stored unchanged).
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
        self.stream_pack(uid, &path, chunks, level, PutMode::CreateOnly, config)
            .await?;
        let back = self.read_pack_chunks(uid, &path).await?;
        let same = back.sample_rate == config.sample_rate
            && back.channels == config.channels
            && back.chunks.len() == chunks.len()
            && back.chunks.iter().zip(chunks).all(|(stored, c)| {
                let copied = match (&stored.opus, &c.opus) {
                    (Some(stored), Some(given)) => stored == given,
                    _ => true,
                };
                stored.start == c.timestamp
                    && stored.pcm.len() == c.pcm.len()
                    && (back.codec.is_lossy() || stored.pcm[..] == c.pcm[..])
                    && copied
            });
        if !same {
            return Err(ServiceError::Decode {
                path,
                reason: "the pack read back differs from what was written".to_owned(),
            });
        }
        Ok(path)
    }
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
