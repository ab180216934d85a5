//! The reader side: trailer, index and single frames, from a tail buffer plus ranged reads.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use crate::name::{NameError, ObjectName};
use crate::timestamp::Timestamp;

use super::codec::decompress_exact;
use super::error::{PackError, PackPart};
use super::frame_codec::FrameCodec;
use super::header::{Codec, PackHeader, le_u32, le_u64};
use super::seal::SegmentOpener;
use super::{
    ENTRY_LEN, HEADER_LEN, INDEX_FIXED_LEN, MAGIC, MAX_CHUNK_BYTES, MAX_CHUNKS, MIN_PACK_LEN,
    TAIL_READ_LEN, TRAILER_LEN,
};

/// One chunk's entry in the index: where its frame is and what it decodes to.
///
/// Encoded as 32 bytes: `start_ms u64 | sample_count u32 | offset u64 | stored_len u32 |
/// plain_len u32 | crc32c u32`, little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IndexEntry {
    /// When the chunk's first sample was recorded.
    pub start: Timestamp,
    /// Sample frames in the chunk (samples per channel).
    pub sample_count: u32,
    /// Offset of the chunk's frame in the object.
    pub offset: u64,
    /// Length of the frame as stored (compressed and/or sealed).
    pub stored_len: u32,
    /// Length of the decoded PCM: `sample_count × 2 × channels`.
    pub plain_len: u32,
    /// CRC-32C (Castagnoli) of the decoded PCM — for [`Codec::Opus`], of the stored frame —;
    /// 0 in sealed packs, which the AEAD protects.
    pub crc32c: u32,
}

impl IndexEntry {
    /// The 32-byte encoding (also the associated data a sealed frame binds after the header).
    pub fn to_bytes(&self) -> [u8; ENTRY_LEN] {
        let mut out = [0u8; ENTRY_LEN];
        out[0..8].copy_from_slice(&self.start.as_millis().to_le_bytes());
        out[8..12].copy_from_slice(&self.sample_count.to_le_bytes());
        out[12..20].copy_from_slice(&self.offset.to_le_bytes());
        out[20..24].copy_from_slice(&self.stored_len.to_le_bytes());
        out[24..28].copy_from_slice(&self.plain_len.to_le_bytes());
        out[28..32].copy_from_slice(&self.crc32c.to_le_bytes());
        out
    }

    /// The frame's byte range in the object.
    pub fn frame_range(&self) -> Range<u64> {
        self.offset..self.offset + u64::from(self.stored_len)
    }
}

/// The associated data of sealed frame `entry`: header bytes followed by the entry's bytes.
pub(super) fn frame_aad(
    header: &[u8; HEADER_LEN],
    entry: &IndexEntry,
) -> [u8; HEADER_LEN + ENTRY_LEN] {
    let mut aad = [0u8; HEADER_LEN + ENTRY_LEN];
    aad[..HEADER_LEN].copy_from_slice(header);
    aad[HEADER_LEN..].copy_from_slice(&entry.to_bytes());
    aad
}

/// Plaintext index length for `count` chunks: count, entries, crc.
pub(super) fn index_plain_len(count: u32) -> u64 {
    INDEX_FIXED_LEN as u64 + u64::from(count) * ENTRY_LEN as u64
}

/// Encodes the plaintext index body: `count u32 | entries | crc32c u32`.
pub(super) fn encode_index(entries: &[IndexEntry]) -> Vec<u8> {
    let mut body = Vec::with_capacity(INDEX_FIXED_LEN + entries.len() * ENTRY_LEN);
    body.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for entry in entries {
        body.extend_from_slice(&entry.to_bytes());
    }
    let crc = crc32c::crc32c(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

/// Encodes the trailer: header copy, index offset and length, chunk count, crc, magic.
pub(super) fn encode_trailer(
    header: &[u8; HEADER_LEN],
    index_offset: u64,
    index_len: u32,
    chunk_count: u32,
) -> [u8; TRAILER_LEN] {
    let mut out = [0u8; TRAILER_LEN];
    out[..HEADER_LEN].copy_from_slice(header);
    out[48..56].copy_from_slice(&index_offset.to_le_bytes());
    out[56..60].copy_from_slice(&index_len.to_le_bytes());
    out[60..64].copy_from_slice(&chunk_count.to_le_bytes());
    let crc = crc32c::crc32c(&out[..64]);
    out[64..68].copy_from_slice(&crc.to_le_bytes());
    out[68..72].copy_from_slice(&MAGIC);
    out
}

/// A pack's trailer, parsed from a buffer holding the object's last bytes.
///
/// The first step of a ranged read: read the last [`PackTail::read_len`] bytes, call
/// [`PackTail::new`], look at [`PackTail::header`] (to build an opener for a sealed pack), then
/// [`PackTail::index`]. [`PackTail::parse`] does all of it in one call.
#[derive(Debug, Clone)]
pub struct PackTail<'a> {
    tail: &'a [u8],
    object_len: u64,
    header: PackHeader,
    header_bytes: [u8; HEADER_LEN],
    index_offset: u64,
    index_len: u32,
    chunk_count: u32,
}

impl<'a> PackTail<'a> {
    /// How many bytes from the end of an `object_len`-byte pack to read first:
    /// `min(object_len, TAIL_READ_LEN)`.
    pub fn read_len(object_len: u64) -> u64 {
        object_len.min(TAIL_READ_LEN)
    }

    /// Parses the trailer at the end of `tail`, the last `tail.len()` bytes of a pack of
    /// `object_len` bytes.
    ///
    /// Checks the end magic, the trailer's checksum, the header copy (as
    /// [`PackHeader::parse`]) and that the locator describes an index that fits between the
    /// smallest possible frames and the trailer.
    pub fn new(tail: &'a [u8], object_len: u64) -> Result<PackTail<'a>, PackError> {
        let tail_len = tail.len() as u64;
        if object_len < MIN_PACK_LEN {
            return Err(PackError::TooShort {
                object_len,
                min: MIN_PACK_LEN,
            });
        }
        let trailer_bytes = match tail.last_chunk::<TRAILER_LEN>() {
            Some(t) if tail_len <= object_len => t,
            _ => {
                return Err(PackError::BadTail {
                    tail_len,
                    object_len,
                    min: TRAILER_LEN as u64,
                });
            }
        };
        let trailer_offset = object_len - TRAILER_LEN as u64;
        let [.., e0, e1, e2, e3] = *trailer_bytes;
        if [e0, e1, e2, e3] != MAGIC {
            return Err(PackError::BadMagic {
                part: PackPart::Trailer,
                offset: trailer_offset + 68,
                found: [e0, e1, e2, e3],
            });
        }
        let stored = le_u32(trailer_bytes, 64);
        let computed = crc32c::crc32c(&trailer_bytes[..64]);
        if stored != computed {
            return Err(PackError::Checksum {
                part: PackPart::Trailer,
                offset: trailer_offset,
                stored,
                computed,
            });
        }
        let mut header_bytes = [0u8; HEADER_LEN];
        header_bytes.copy_from_slice(&trailer_bytes[..HEADER_LEN]);
        let header = PackHeader::parse(&header_bytes, trailer_offset, PackPart::TrailerHeader)?;
        let index_offset = le_u64(trailer_bytes, 48);
        let index_len = le_u32(trailer_bytes, 56);
        let chunk_count = le_u32(trailer_bytes, 60);
        let bad = |reason: &'static str| PackError::BadLocator {
            offset: trailer_offset,
            reason,
            index_offset,
            index_len,
            chunk_count,
        };
        if chunk_count == 0 || chunk_count > MAX_CHUNKS {
            return Err(bad("chunk count outside 1..=1048576"));
        }
        if index_offset.checked_add(u64::from(index_len)) != Some(trailer_offset) {
            return Err(bad("the index does not end where the trailer starts"));
        }
        if u64::from(index_len) < index_plain_len(chunk_count) {
            return Err(bad("the index is shorter than its chunk count needs"));
        }
        // Every frame is at least one byte long.
        if index_offset < HEADER_LEN as u64 + u64::from(chunk_count) {
            return Err(bad("the index starts before the frames could end"));
        }
        Ok(PackTail {
            tail,
            object_len,
            header,
            header_bytes,
            index_offset,
            index_len,
            chunk_count,
        })
    }

    /// The header, from the trailer's copy; build an opener from its
    /// [`PackHeader::seal`] before calling [`PackTail::index`].
    pub fn header(&self) -> &PackHeader {
        &self.header
    }

    /// Number of chunks the trailer records (authenticated only once the index is opened).
    pub fn chunk_count(&self) -> u32 {
        self.chunk_count
    }

    /// Byte range of the index in the object.
    pub fn index_range(&self) -> Range<u64> {
        self.index_offset..self.index_offset + u64::from(self.index_len)
    }

    /// Reads (opening it, when sealed) and validates the index.
    ///
    /// `opener` must be given exactly when the header says the pack is sealed
    /// ([`PackError::OpenerRequired`], [`PackError::NotEncrypted`]). Fails with
    /// [`PackError::NeedMore`] when the index starts before the tail; every entry is checked:
    /// frames back to back from offset 48 up to the index, lengths consistent with the codec
    /// and the sample format, chunks in time order without overlap.
    pub fn index(&self, opener: Option<&dyn SegmentOpener>) -> Result<PackIndex, PackError> {
        let header = &self.header;
        let overhead = check_opener(header, opener)?.map_or(0, |o| o.overhead() as u64);
        let plain_len = index_plain_len(self.chunk_count);
        if Some(u64::from(self.index_len)) != plain_len.checked_add(overhead) {
            return Err(PackError::BadLocator {
                offset: self.object_len - TRAILER_LEN as u64,
                reason: "the index length does not match its chunk count",
                index_offset: self.index_offset,
                index_len: self.index_len,
                chunk_count: self.chunk_count,
            });
        }
        let tail_start = self.object_len - self.tail.len() as u64;
        if self.index_offset < tail_start {
            return Err(PackError::NeedMore {
                from_offset: self.index_offset,
            });
        }
        let stored = usize::try_from(self.index_offset - tail_start)
            .ok()
            .and_then(|start| {
                self.tail
                    .get(start..start.checked_add(self.index_len as usize)?)
            })
            .ok_or(PackError::NeedMore {
                from_offset: self.index_offset,
            })?;
        let opened;
        let body: &[u8] = match opener {
            None => stored,
            Some(opener) => {
                opened = opener
                    .open(self.chunk_count, &self.header_bytes, stored, true)
                    .map_err(|source| PackError::Open {
                        part: PackPart::Index,
                        offset: self.index_offset,
                        source,
                    })?;
                if opened.len() as u64 != plain_len {
                    return Err(PackError::SealLength {
                        part: PackPart::Index,
                        expected: plain_len,
                        got: opened.len() as u64,
                    });
                }
                &opened
            }
        };
        let entries = self.parse_entries(body, overhead)?;
        Ok(PackIndex {
            header: self.header,
            header_bytes: self.header_bytes,
            entries,
            index_offset: self.index_offset,
            index_len: self.index_len,
            object_len: self.object_len,
        })
    }

    /// Parses and validates the plaintext index body (its length already checked).
    fn parse_entries(&self, body: &[u8], overhead: u64) -> Result<Vec<IndexEntry>, PackError> {
        let count = self.chunk_count;
        let in_index = le_u32(body, 0);
        let Some((covered, crc_bytes)) = body.split_last_chunk::<4>() else {
            return Err(PackError::IndexCount {
                offset: self.index_offset,
                in_trailer: count,
                in_index,
            });
        };
        let stored = u32::from_le_bytes(*crc_bytes);
        let computed = crc32c::crc32c(covered);
        if stored != computed {
            return Err(PackError::Checksum {
                part: PackPart::Index,
                offset: self.index_offset,
                stored,
                computed,
            });
        }
        if in_index != count {
            return Err(PackError::IndexCount {
                offset: self.index_offset,
                in_trailer: count,
                in_index,
            });
        }
        let header = &self.header;
        let sealed = header.is_encrypted();
        let block_align = u64::from(header.block_align());
        // `count` is bounded by the index bytes actually present (length checked above).
        let mut entries = Vec::with_capacity(count as usize);
        let mut next_offset = HEADER_LEN as u64;
        let mut previous_end: Option<Timestamp> = None;
        for (chunk, raw) in
            (0..count).zip(covered.get(4..).unwrap_or_default().chunks_exact(ENTRY_LEN))
        {
            let bad = |reason: &'static str| PackError::BadEntry { chunk, reason };
            let start = Timestamp::from_millis(le_u64(raw, 0))
                .ok_or_else(|| bad("start is beyond the largest timestamp"))?;
            let entry = IndexEntry {
                start,
                sample_count: le_u32(raw, 8),
                offset: le_u64(raw, 12),
                stored_len: le_u32(raw, 20),
                plain_len: le_u32(raw, 24),
                crc32c: le_u32(raw, 28),
            };
            if entry.sample_count == 0 {
                return Err(bad("the chunk holds no samples"));
            }
            if u64::from(entry.plain_len) != u64::from(entry.sample_count) * block_align {
                return Err(bad("plain length is not sample count × 2 × channels"));
            }
            if entry.plain_len > MAX_CHUNK_BYTES {
                return Err(bad("plain length is above the 64 MiB chunk limit"));
            }
            if entry.offset != next_offset {
                return Err(bad("the frame does not start right after the previous one"));
            }
            let stored_ok = match header.codec() {
                Codec::Pcm16Le => {
                    u64::from(entry.stored_len) == u64::from(entry.plain_len) + overhead
                }
                Codec::ZstdPcm16Le | Codec::Opus => u64::from(entry.stored_len) > overhead,
            };
            if !stored_ok {
                return Err(bad("stored length does not fit the codec and sealing"));
            }
            next_offset = entry.frame_range().end;
            if next_offset > self.index_offset {
                return Err(bad("the frame runs into the index"));
            }
            if sealed && entry.crc32c != 0 {
                return Err(bad(
                    "a sealed pack records no plaintext checksum (must be 0)",
                ));
            }
            if let Some(previous_end) = previous_end
                && start < previous_end
            {
                return Err(PackError::Overlap {
                    chunk,
                    start,
                    previous_end,
                });
            }
            previous_end = Some(
                start
                    .as_millis()
                    .checked_add(header.duration_ms(entry.sample_count))
                    .and_then(Timestamp::from_millis)
                    .ok_or_else(|| bad("the chunk ends after the largest timestamp"))?,
            );
            entries.push(entry);
        }
        if next_offset != self.index_offset {
            return Err(PackError::BadEntry {
                chunk: count - 1,
                reason: "the last frame does not end where the index starts",
            });
        }
        Ok(entries)
    }

    /// Parses the trailer and the index in one call: [`PackTail::new`] then
    /// [`PackTail::index`]. For a sealed pack the caller must already know how to open it
    /// (e.g. by having read the header before); otherwise use the two steps.
    pub fn parse(
        tail: &'a [u8],
        object_len: u64,
        opener: Option<&dyn SegmentOpener>,
    ) -> Result<PackIndex, PackError> {
        PackTail::new(tail, object_len)?.index(opener)
    }
}

/// Checks that an opener is given exactly for sealed packs and returns it.
fn check_opener<'o>(
    header: &PackHeader,
    opener: Option<&'o dyn SegmentOpener>,
) -> Result<Option<&'o dyn SegmentOpener>, PackError> {
    match (header.seal(), opener) {
        (Some(seal), None) => Err(PackError::OpenerRequired {
            key_id: seal.key_id,
        }),
        (None, Some(_)) => Err(PackError::NotEncrypted),
        (_, opener) => Ok(opener),
    }
}

/// A pack's validated index: the header and, per chunk, where its frame is and what it holds.
///
/// Get one from a tail ([`PackTail::parse`]) or a whole object ([`PackIndex::from_object`]);
/// then fetch any frame by [`PackIndex::frame_range`] and decode it with
/// [`PackIndex::decode_frame`]. Its `Display` form is a human-readable dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackIndex {
    header: PackHeader,
    header_bytes: [u8; HEADER_LEN],
    entries: Vec<IndexEntry>,
    index_offset: u64,
    index_len: u32,
    object_len: u64,
}

impl PackIndex {
    /// Reads the index of a whole pack held in memory, also checking that the leading header is
    /// byte-identical to the trailer's copy.
    pub fn from_object(
        object: &[u8],
        opener: Option<&dyn SegmentOpener>,
    ) -> Result<PackIndex, PackError> {
        let tail = PackTail::new(object, object.len() as u64)?;
        if object.get(..HEADER_LEN) != Some(&tail.header_bytes[..]) {
            return Err(PackError::HeaderMismatch {
                trailer_offset: object.len() as u64 - TRAILER_LEN as u64,
            });
        }
        tail.index(opener)
    }

    /// The header (from the trailer's copy).
    pub fn header(&self) -> &PackHeader {
        &self.header
    }

    /// The 48 header bytes, as sealed frames bind them.
    pub fn header_bytes(&self) -> &[u8; HEADER_LEN] {
        &self.header_bytes
    }

    /// One entry per chunk, in time order.
    pub fn entries(&self) -> &[IndexEntry] {
        &self.entries
    }

    /// Number of chunks (at least one).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always `false`: a pack holds at least one chunk.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Length of the whole object.
    pub fn object_len(&self) -> u64 {
        self.object_len
    }

    /// Byte range of the index in the object.
    pub fn index_range(&self) -> Range<u64> {
        self.index_offset..self.index_offset + u64::from(self.index_len)
    }

    /// Start of the first chunk: the `START` of the pack's name.
    pub fn start(&self) -> Timestamp {
        self.entries.first().map_or(Timestamp::ZERO, |e| e.start)
    }

    /// End of chunk `entry`'s audio (exclusive): start + `ceil(samples × 1000 / rate)` ms.
    pub fn chunk_end(&self, entry: &IndexEntry) -> Timestamp {
        // Checked against Timestamp::MAX when the index was parsed.
        entry
            .start
            .saturating_add_millis(self.header.duration_ms(entry.sample_count))
    }

    /// End of the last chunk's audio (exclusive): the `END` of the pack's name.
    pub fn end(&self) -> Timestamp {
        self.entries
            .last()
            .map_or(Timestamp::ZERO, |e| self.chunk_end(e))
    }

    /// The object name this pack must have: `START-END.pack`.
    pub fn object_name(&self) -> Result<ObjectName, NameError> {
        ObjectName::pack(self.start(), self.end())
    }

    /// Byte range of chunk `chunk`'s frame in the object, for a ranged read.
    pub fn frame_range(&self, chunk: usize) -> Option<Range<u64>> {
        self.entries.get(chunk).map(IndexEntry::frame_range)
    }

    /// Chunk `chunk`'s frame, sliced out of the whole object.
    pub fn frame_bytes<'o>(&self, chunk: usize, object: &'o [u8]) -> Result<&'o [u8], PackError> {
        let range = self.frame_range(chunk).ok_or(PackError::NoSuchChunk {
            chunk,
            count: self.entries.len(),
        })?;
        let start = usize::try_from(range.start).ok();
        let end = usize::try_from(range.end).ok();
        start
            .zip(end)
            .and_then(|(s, e)| object.get(s..e))
            .ok_or(PackError::FrameLength {
                chunk: chunk as u32,
                expected: range.end - range.start,
                got: (object.len() as u64).saturating_sub(range.start),
            })
    }

    /// Decodes chunk `chunk` from its frame bytes (exactly [`PackIndex::frame_range`]) to PCM16LE.
    ///
    /// Sealed packs: the frame is opened as segment `chunk` with associated data header ||
    /// index entry, so a frame moved, taken from another pack or altered fails to open.
    /// Plaintext packs: the decoded PCM must match the entry's CRC-32C. zstd frames are decoded
    /// with memory bounded by the entry's plain length. An Opus pack fails with
    /// [`PackError::CodecRequired`]: use [`PackIndex::decode_frame_with`].
    pub fn decode_frame(
        &self,
        chunk: usize,
        frame: &[u8],
        opener: Option<&dyn SegmentOpener>,
    ) -> Result<Vec<u8>, PackError> {
        self.decode_frame_with(chunk, frame, opener, None)
    }

    /// Decodes chunk `chunk` like [`PackIndex::decode_frame`], decoding an Opus frame with
    /// `codec` (ignored by the built-in codecs; required for Opus, else
    /// [`PackError::CodecRequired`]).
    ///
    /// For Opus the entry's CRC-32C (plaintext packs) is checked over the stored frame before
    /// the codec sees it, and the decoded PCM must be exactly the entry's plain length
    /// ([`PackError::DecodedLength`]).
    pub fn decode_frame_with(
        &self,
        chunk: usize,
        frame: &[u8],
        opener: Option<&dyn SegmentOpener>,
        codec: Option<&dyn FrameCodec>,
    ) -> Result<Vec<u8>, PackError> {
        if self.header.codec().needs_frame_codec() && codec.is_none() {
            return Err(PackError::CodecRequired {
                codec: self.header.codec(),
            });
        }
        let payload = self.open_frame(chunk, frame, opener)?;
        self.decode_payload(chunk, &payload, codec)
    }

    /// Opens chunk `chunk`'s frame bytes (exactly [`PackIndex::frame_range`]) without decoding
    /// them: checks the length, unseals a sealed pack's frame (authenticated as in
    /// [`PackIndex::decode_frame`]), and returns the stored payload (borrowed from `frame` for
    /// a plaintext pack) — raw PCM, a zstd frame, or
    /// the frame codec's frame. For an Opus pack that payload can go unchanged into another
    /// pack ([`super::PackEncoder::push_encoded_frame`]).
    ///
    /// In a plaintext Opus pack the entry's CRC-32C covers this payload and is checked here; in
    /// PCM and zstd packs it covers the decoded PCM and is checked by
    /// [`PackIndex::decode_payload`].
    pub fn open_frame<'f>(
        &self,
        chunk: usize,
        frame: &'f [u8],
        opener: Option<&dyn SegmentOpener>,
    ) -> Result<Cow<'f, [u8]>, PackError> {
        let entry = self.entries.get(chunk).ok_or(PackError::NoSuchChunk {
            chunk,
            count: self.entries.len(),
        })?;
        let counter = chunk as u32;
        let opener = check_opener(&self.header, opener)?;
        if frame.len() as u64 != u64::from(entry.stored_len) {
            return Err(PackError::FrameLength {
                chunk: counter,
                expected: u64::from(entry.stored_len),
                got: frame.len() as u64,
            });
        }
        let payload = match opener {
            None => Cow::Borrowed(frame),
            Some(opener) => {
                let aad = frame_aad(&self.header_bytes, entry);
                let opened =
                    opener
                        .open(counter, &aad, frame, false)
                        .map_err(|source| PackError::Open {
                            part: PackPart::Frame { chunk: counter },
                            offset: entry.offset,
                            source,
                        })?;
                let expected = u64::from(entry.stored_len).saturating_sub(opener.overhead() as u64);
                if opened.len() as u64 != expected {
                    return Err(PackError::SealLength {
                        part: PackPart::Frame { chunk: counter },
                        expected,
                        got: opened.len() as u64,
                    });
                }
                Cow::Owned(opened)
            }
        };
        if self.header.codec().needs_frame_codec() {
            self.check_crc(counter, entry, &payload)?;
        }
        Ok(payload)
    }

    /// In a plaintext pack, checks `bytes` (the decoded PCM, or an Opus frame) against the
    /// entry's CRC-32C; sealed packs carry no CRC (the AEAD tag covers the frame).
    fn check_crc(&self, chunk: u32, entry: &IndexEntry, bytes: &[u8]) -> Result<(), PackError> {
        if self.header.is_encrypted() {
            return Ok(());
        }
        let computed = crc32c::crc32c(bytes);
        if computed != entry.crc32c {
            return Err(PackError::Checksum {
                part: PackPart::Frame { chunk },
                offset: entry.offset,
                stored: entry.crc32c,
                computed,
            });
        }
        Ok(())
    }

    /// Decodes chunk `chunk` from its payload as [`PackIndex::open_frame`] returned it, to
    /// exactly the entry's plain length of PCM16LE; `codec` decodes an Opus payload (else
    /// [`PackError::CodecRequired`]). In a plaintext PCM or zstd pack the decoded PCM must match
    /// the entry's CRC-32C.
    pub fn decode_payload(
        &self,
        chunk: usize,
        payload: &[u8],
        codec: Option<&dyn FrameCodec>,
    ) -> Result<Vec<u8>, PackError> {
        let entry = self.entries.get(chunk).ok_or(PackError::NoSuchChunk {
            chunk,
            count: self.entries.len(),
        })?;
        let counter = chunk as u32;
        let pcm = match self.header.codec() {
            Codec::Pcm16Le => {
                if payload.len() as u64 != u64::from(entry.plain_len) {
                    return Err(PackError::FrameLength {
                        chunk: counter,
                        expected: u64::from(entry.plain_len),
                        got: payload.len() as u64,
                    });
                }
                payload.to_vec()
            }
            Codec::ZstdPcm16Le => {
                decompress_exact(payload, entry.plain_len).map_err(|reason| PackError::Zstd {
                    chunk: counter,
                    offset: entry.offset,
                    reason,
                })?
            }
            Codec::Opus => {
                let Some(codec) = codec else {
                    return Err(PackError::CodecRequired { codec: Codec::Opus });
                };
                let pcm = codec.decode(payload, entry.plain_len).map_err(|source| {
                    PackError::FrameDecode {
                        chunk: counter,
                        offset: entry.offset,
                        source,
                    }
                })?;
                if pcm.len() as u64 != u64::from(entry.plain_len) {
                    return Err(PackError::DecodedLength {
                        chunk: counter,
                        offset: entry.offset,
                        expected: u64::from(entry.plain_len),
                        got: pcm.len() as u64,
                    });
                }
                // The stored frame's CRC was checked by open_frame.
                return Ok(pcm);
            }
        };
        self.check_crc(counter, entry, &pcm)?;
        Ok(pcm)
    }
}

impl fmt::Display for PackIndex {
    /// A human-readable dump: header, span, layout and one line per chunk.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.header)?;
        writeln!(
            f,
            "span {}-{} ({} chunks, {} bytes, index {}..{})",
            self.start(),
            self.end(),
            self.entries.len(),
            self.object_len,
            self.index_offset,
            self.index_range().end
        )?;
        writeln!(
            f,
            "{:>5}  {:<16} {:>10} {:>10} {:>10} {:>10}  {:<10}  end",
            "chunk", "start", "samples", "offset", "stored", "plain", "crc32c"
        )?;
        for (i, e) in self.entries.iter().enumerate() {
            writeln!(
                f,
                "{:>5}  {:<16} {:>10} {:>10} {:>10} {:>10}  {:<10}  {}",
                i,
                e.start.to_string(),
                e.sample_count,
                e.offset,
                e.stored_len,
                e.plain_len,
                format!("{:08x}", e.crc32c),
                self.chunk_end(e)
            )?;
        }
        Ok(())
    }
}
