//! Packs on the read path: reading a pack's index with ranged reads, fetching only the frames
//! a request needs, and reading a pack whole (still encoded, or decoded) for checks,
//! compaction and rewrites.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use chunk_crypto::pack::{PackOpener, PackPlace};
use chunk_format::pack::{
    Codec, ENTRY_LEN, FrameCodec, INDEX_FIXED_LEN, PackConfig, PackError, PackIndex, PackTail,
    TRAILER_LEN,
};
use chunk_format::{ObjectKind, ObjectName, Timestamp};
use chunk_store::{ConversationId, UserId};

use crate::codec::opus::OmiOpusCodec;
use crate::error::{DecodeError, ServiceError};
use crate::read::decode::on_decode_pool;
use crate::read::list::ListEntry;
use crate::read::policy::{OpenFor, PackSealing};
use crate::service::ChunkService;

/// Largest span of adjacent frames fetched with one ranged read.
const MAX_COALESCED_READ: u64 = 512 * 1024;

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
    pub(crate) fn config(&self, service: &PackConfig) -> PackConfig {
        let header = self.index.header();
        PackConfig {
            codec: header.codec(),
            sample_rate: header.sample_rate(),
            channels: header.channels(),
            ..*service
        }
    }

    /// The pack's index.
    pub(crate) fn index(&self) -> &PackIndex {
        &self.index
    }

    /// The opened payload of chunk `i`, as stored.
    pub(crate) fn payload(&self, i: usize) -> &Bytes {
        &self.payloads[i]
    }

    /// Number of chunks.
    pub(crate) fn len(&self) -> usize {
        self.payloads.len()
    }

    /// Start and end of chunk `i`.
    pub(crate) fn span(&self, i: usize) -> (Timestamp, Timestamp) {
        let entry = &self.index.entries()[i];
        (entry.start, self.index.chunk_end(entry))
    }

    /// Decodes chunk `i` (its claimed length was checked against the limit when read).
    pub(crate) fn decode(&self, i: usize) -> Result<Bytes, ServiceError> {
        let codec = self.index.header().codec();
        self.index
            .decode_payload(i, &self.payloads[i], frame_codec(codec))
            .map(Bytes::from)
            .map_err(|e| pack_error(&self.path, e))
    }
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
pub(crate) fn frame_codec(codec: Codec) -> Option<&'static dyn FrameCodec> {
    match codec {
        Codec::Opus => Some(&OmiOpusCodec),
        _ => None,
    }
}

pub(crate) fn pack_error(path: &str, error: PackError) -> ServiceError {
    ServiceError::decode(path, error)
}
impl ChunkService {
    /// Reads a whole pack (of about `size_hint` bytes as listed, 0 when unknown: it sizes the
    /// read buffer only) without decoding it: index (authenticated when sealed, refused
    /// when plaintext and `sealing` requires a seal), the name checked against the index,
    /// every chunk's claimed length checked against the limit, every frame opened.
    pub(crate) async fn read_pack_stored(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        path: &str,
        sealing: PackSealing,
        purpose: OpenFor,
        size_hint: u64,
    ) -> Result<StoredPack, ServiceError> {
        let name = path
            .rsplit('/')
            .next()
            .and_then(|name| name.parse::<ObjectName>().ok())
            .filter(|name| name.kind() == ObjectKind::Pack)
            .ok_or_else(|| {
                ServiceError::decode(
                    path,
                    DecodeError::WrongKind {
                        kind: path.rsplit('/').next().unwrap_or(path).to_owned(),
                        wanted: "pack",
                    },
                )
            })?;
        let object = self.inner.store.read_sized(path, size_hint).await?;
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
            .ok_or_else(|| ServiceError::decode(path, DecodeError::NoKeyMaterial))?;
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
        entry: &ListEntry,
        sealing: PackSealing,
        purpose: OpenFor,
    ) -> Result<LoadedPack, ServiceError> {
        let (path, size, name) = (entry.path.as_str(), entry.size, &entry.name);
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
        let opener = self.pack_opener(place, path, parsed.header(), sealing, purpose)?;
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

    /// Fetches chunks `run` of a loaded pack with one ranged read and decodes each on the
    /// decode pool (so the jobs a download keeps in flight decode on every core), to (start
    /// in ms, PCM, and with `keep_opus` the stored Omi Opus container of an Opus pack's chunk);
    /// a chunk claiming more than the limit is refused before the read.
    pub(crate) async fn read_pack_run(
        &self,
        pack: &LoadedPack,
        run: Range<usize>,
        keep_opus: bool,
    ) -> Result<Vec<ReadChunk>, ServiceError> {
        let path = &pack.path;
        self.check_chunk_claims(path, &pack.index, run.clone())?;
        let entries = &pack.index.entries()[run.clone()];
        let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
            return Ok(Vec::new());
        };
        let span = first.offset..last.offset + u64::from(last.stored_len);
        let bytes = self.inner.store.read_range(path, span.clone()).await?;
        let pack = pack.clone();
        on_decode_pool(path, move || {
            pack.decode_run(run, span.start, &bytes, keep_opus)
        })
        .await
    }
}

impl LoadedPack {
    /// Opens and decodes chunks `run` from `bytes`, the pack's bytes from offset `from`.
    fn decode_run(
        &self,
        run: Range<usize>,
        from: u64,
        bytes: &[u8],
        keep_opus: bool,
    ) -> Result<Vec<ReadChunk>, ServiceError> {
        let path = &self.path;
        let codec = self.index.header().codec();
        let keep_opus = keep_opus && codec == Codec::Opus;
        run.map(|i| {
            let entry = &self.index.entries()[i];
            let at = (entry.offset - from) as usize;
            let frame = bytes
                .get(at..at + entry.stored_len as usize)
                .ok_or_else(|| ServiceError::decode(path, DecodeError::ShortRead { chunk: i }))?;
            let payload = self
                .index
                .open_frame(i, frame, self.opener.as_deref().map(as_opener))
                .map_err(|e| pack_error(path, e))?;
            let pcm = self
                .index
                .decode_payload(i, &payload, frame_codec(codec))
                .map_err(|e| pack_error(path, e))?;
            Ok(ReadChunk {
                start_ms: entry.start.as_millis(),
                pcm: Bytes::from(pcm),
                opus: keep_opus.then(|| Bytes::copy_from_slice(&payload)),
            })
        })
        .collect()
    }
}

/// One chunk of a pack read by [`ChunkService::read_pack_run`].
#[derive(Debug)]
pub(crate) struct ReadChunk {
    pub(crate) start_ms: u64,
    pub(crate) pcm: Bytes,
    /// The stored Omi Opus container (Opus packs, when asked for).
    pub(crate) opus: Option<Bytes>,
}

/// Refuses a pack whose index does not match its name: the same START, and an END that is
/// the index's end or (a rewritten pack) a bound past it.
fn check_name(path: &str, name: &ObjectName, index: &PackIndex) -> Result<(), ServiceError> {
    if index.object_name().ok().as_ref() == Some(name) || name_bounds(name, index) {
        return Ok(());
    }
    Err(ServiceError::decode(
        path,
        DecodeError::NameMismatch {
            start: index.start(),
            end: index.end(),
            name: name.to_string(),
        },
    ))
}

/// Whether a name is a valid upper bound for an index (a rewritten pack may have a bumped END).
fn name_bounds(name: &ObjectName, index: &PackIndex) -> bool {
    name.kind() == ObjectKind::Pack && name.start() == index.start() && name.end() >= index.end()
}

fn as_opener(opener: &PackOpener) -> &dyn chunk_format::pack::SegmentOpener {
    opener
}
