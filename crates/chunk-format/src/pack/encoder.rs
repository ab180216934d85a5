//! The streaming writer: one chunk in, its frame out; the index and trailer at the end.

use crate::timestamp::Timestamp;

use super::codec::Compressor;
use super::error::{PackError, PackPart};
use super::frame_codec::{CodecError, FrameCodec};
use super::header::{Codec, PackHeader};
use super::index::{IndexEntry, encode_index, encode_trailer, frame_aad, index_plain_len};
use super::seal::SegmentSealer;
use super::{DEFAULT_ZSTD_LEVEL, HEADER_LEN, MAX_CHUNK_BYTES, MAX_CHUNKS};

/// How to write a pack: codec, sample format and zstd level.
///
/// The default is what chunkvault writes for new data: zstd at [`DEFAULT_ZSTD_LEVEL`], 16 kHz
/// mono (Omi's format).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackConfig {
    /// How frames encode their PCM.
    pub codec: Codec,
    /// Sample frames per second (`1..=768000`).
    pub sample_rate: u32,
    /// Interleaved channels (at least 1).
    pub channels: u8,
    /// zstd compression level (any level zstd accepts; ignored by the other codecs).
    /// Not recorded in the pack: readers do not need it.
    pub zstd_level: i32,
}

impl PackConfig {
    /// A configuration with the default zstd level.
    pub const fn new(codec: Codec, sample_rate: u32, channels: u8) -> PackConfig {
        PackConfig {
            codec,
            sample_rate,
            channels,
            zstd_level: DEFAULT_ZSTD_LEVEL,
        }
    }

    /// The same configuration with zstd level `level`.
    pub const fn with_zstd_level(self, level: i32) -> PackConfig {
        PackConfig {
            zstd_level: level,
            ..self
        }
    }
}

impl Default for PackConfig {
    fn default() -> PackConfig {
        PackConfig::new(Codec::ZstdPcm16Le, 16_000, 1)
    }
}

/// Writes a pack chunk by chunk, returning the bytes to append to the object after each step.
///
/// Memory is bounded whatever the chunk count: one chunk's encoded frame at a time (plus, for
/// zstd, one compression context), and 32 bytes of index entry per chunk pushed so far (an hour
/// of 5 s chunks is 720 entries, 23 KiB). Chunks must be pushed in time order without overlap:
/// each starts at or after the previous one's end (start + `ceil(samples × 1000 / rate)` ms).
/// A call that fails changes nothing, so the caller may skip the chunk or abandon the object.
///
/// ```
/// use chunk_format::Timestamp;
/// use chunk_format::pack::{Codec, PackConfig, PackEncoder, PackIndex};
///
/// let mut enc = PackEncoder::new(PackConfig::new(Codec::ZstdPcm16Le, 16_000, 1), None)?;
/// let mut object = enc.push_chunk(Timestamp::from_millis(1_000).unwrap(), &[0u8; 3200])?; // 100 ms
/// object.extend(enc.push_chunk(Timestamp::from_millis(5_000).unwrap(), &[1u8; 1600])?);
/// let (start, end) = enc.time_range().unwrap();
/// object.extend(enc.finish()?);
///
/// let index = PackIndex::from_object(&object, None)?;
/// assert_eq!((start.as_millis(), end.as_millis()), (1_000, 5_050));
/// assert_eq!(index.object_name()?.to_string(), "1.000-5.050.pack");
/// let frame = index.frame_bytes(1, &object)?;
/// assert_eq!(index.decode_frame(1, frame, None)?, vec![1u8; 1600]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct PackEncoder {
    header: PackHeader,
    header_bytes: [u8; HEADER_LEN],
    sealer: Option<Box<dyn SegmentSealer>>,
    compressor: Option<Compressor>,
    frame_codec: Option<Box<dyn FrameCodec>>,
    entries: Vec<IndexEntry>,
    /// Offset of the next frame (also the number of bytes returned so far, once the header is
    /// out).
    next_offset: u64,
}

impl std::fmt::Debug for PackEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackEncoder")
            .field("header", &self.header)
            .field("chunks", &self.entries.len())
            .field("next_offset", &self.next_offset)
            .finish_non_exhaustive()
    }
}

impl PackEncoder {
    /// Starts a pack; with a `sealer` the pack is sealed and its header records the sealer's
    /// [`super::SealInfo`].
    ///
    /// Fails with [`PackError::BadConfig`] for an invalid sample rate, zero channels or a zstd
    /// level zstd does not accept, and with [`PackError::CodecRequired`] for [`Codec::Opus`]
    /// (use [`PackEncoder::with_codec`]).
    pub fn new(
        config: PackConfig,
        sealer: Option<Box<dyn SegmentSealer>>,
    ) -> Result<PackEncoder, PackError> {
        if config.codec.needs_frame_codec() {
            return Err(PackError::CodecRequired {
                codec: config.codec,
            });
        }
        PackEncoder::build(config, sealer, None)
    }

    /// Starts a pack whose frames `frame_codec` encodes: the way to write [`Codec::Opus`] packs
    /// (16 kHz mono only). In plaintext packs each entry's CRC-32C covers the stored frame.
    ///
    /// Fails with [`PackError::BadConfig`] when `config.codec` is not one that takes a frame
    /// codec, or for a sample format the codec does not allow.
    pub fn with_codec(
        config: PackConfig,
        sealer: Option<Box<dyn SegmentSealer>>,
        frame_codec: Box<dyn FrameCodec>,
    ) -> Result<PackEncoder, PackError> {
        if !config.codec.needs_frame_codec() {
            return Err(PackError::BadConfig {
                reason: format!(
                    "codec {} is built in; a frame codec is only used by Opus packs",
                    config.codec
                ),
            });
        }
        PackEncoder::build(config, sealer, Some(frame_codec))
    }

    fn build(
        config: PackConfig,
        sealer: Option<Box<dyn SegmentSealer>>,
        frame_codec: Option<Box<dyn FrameCodec>>,
    ) -> Result<PackEncoder, PackError> {
        let seal = sealer.as_ref().map(|s| s.seal_info());
        let header = PackHeader::new(config.codec, config.sample_rate, config.channels, seal)?;
        let compressor = match config.codec {
            Codec::Pcm16Le | Codec::Opus => None,
            Codec::ZstdPcm16Le => {
                let range = zstd::compression_level_range();
                if !range.contains(&config.zstd_level) {
                    return Err(PackError::BadConfig {
                        reason: format!(
                            "zstd level {} is outside {}..={}",
                            config.zstd_level,
                            range.start(),
                            range.end()
                        ),
                    });
                }
                Some(
                    Compressor::new(config.zstd_level)
                        .map_err(|reason| PackError::BadConfig { reason })?,
                )
            }
        };
        Ok(PackEncoder {
            header,
            header_bytes: header.to_bytes(),
            sealer,
            compressor,
            frame_codec,
            entries: Vec::new(),
            next_offset: 0,
        })
    }

    /// The header this pack gets.
    pub fn header(&self) -> &PackHeader {
        &self.header
    }

    /// Chunks pushed so far.
    pub fn chunk_count(&self) -> u32 {
        self.entries.len() as u32
    }

    /// Bytes returned by [`PackEncoder::push_chunk`] so far.
    pub fn bytes_written(&self) -> u64 {
        self.next_offset
    }

    /// Start of the first chunk and end of the last (exclusive): the pack's name is
    /// `START-END.pack`. `None` before the first chunk.
    pub fn time_range(&self) -> Option<(Timestamp, Timestamp)> {
        let first = self.entries.first()?;
        Some((first.start, self.end_of(self.entries.last()?)))
    }

    fn end_of(&self, entry: &IndexEntry) -> Timestamp {
        // Checked against Timestamp::MAX when the chunk was pushed.
        entry
            .start
            .saturating_add_millis(self.header.duration_ms(entry.sample_count))
    }

    /// Adds one chunk of interleaved PCM16LE recorded from `start`, and returns the bytes to
    /// append to the object (the first call also returns the header).
    ///
    /// Fails, changing nothing, for an empty chunk, a length that is not a whole number of
    /// sample frames or above [`MAX_CHUNK_BYTES`], a start before the previous chunk's end, an
    /// end past [`Timestamp::MAX`], more than [`MAX_CHUNKS`] chunks, or a compression,
    /// frame-codec or sealing failure.
    pub fn push_chunk(&mut self, start: Timestamp, pcm: &[u8]) -> Result<Vec<u8>, PackError> {
        let (chunk, plain_len, sample_count) = self.check_chunk(start, pcm.len())?;
        let encoded;
        let (payload, crc32c): (&[u8], u32) = match (&mut self.compressor, &self.frame_codec) {
            (Some(c), _) => {
                encoded = c
                    .compress(pcm)
                    .map_err(|reason| PackError::Compress { chunk, reason })?;
                (&encoded, crc32c::crc32c(pcm))
            }
            (None, Some(codec)) => {
                encoded = codec
                    .encode(pcm)
                    .map_err(|source| PackError::FrameEncode { chunk, source })?;
                // The encoder cannot know the decoded PCM of a lossy codec: the CRC covers the
                // stored frame (docs/FORMAT.md, "Codec 2: Opus").
                (&encoded, crc32c::crc32c(&encoded))
            }
            (None, None) => (pcm, crc32c::crc32c(pcm)),
        };
        self.push_payload(start, chunk, plain_len, sample_count, payload, crc32c)
    }

    /// Adds one chunk given as a frame its codec already made: for packs whose codec is coded
    /// by a [`FrameCodec`] (Opus), the frame is stored as it is, so copying chunks from one
    /// such pack to another (a rewrite after a delete, a compaction) does not encode lossy
    /// audio a second time. `plain_len` is the PCM byte length the frame decodes to.
    ///
    /// The frame is not decoded here: a frame that does not decode to `plain_len` bytes is
    /// refused when the pack is read, so callers read the pack back before they rely on it.
    /// Fails like [`PackEncoder::push_chunk`], with [`PackError::EncodedFrameUnsupported`]
    /// for the codecs the container implements itself, and with
    /// [`PackError::FrameEncode`] for an empty frame.
    pub fn push_encoded_frame(
        &mut self,
        start: Timestamp,
        frame: &[u8],
        plain_len: u32,
    ) -> Result<Vec<u8>, PackError> {
        if self.frame_codec.is_none() {
            return Err(PackError::EncodedFrameUnsupported {
                codec: self.header.codec(),
            });
        }
        self.push_stored(start, frame, plain_len, None)
    }

    /// Adds one chunk given as the payload another pack of the same codec stored for it (the
    /// frame as opened, before decoding: raw PCM, one zstd frame, or an Omi Opus container),
    /// so copying chunks between packs — a rewrite after a delete — neither decodes nor
    /// re-encodes them. `plain_len` is the PCM byte length the payload decodes to.
    ///
    /// `pcm_crc32c` is the CRC-32C of the decoded PCM, which a plaintext zstd pack records
    /// and cannot compute without decoding (the source pack's entry has it); it is ignored
    /// otherwise. Like [`PackEncoder::push_encoded_frame`], the payload is not decoded here:
    /// read the pack back before relying on it. Fails like [`PackEncoder::push_chunk`], with
    /// [`PackError::FrameLength`] for a PCM payload whose length is not `plain_len`,
    /// [`PackError::FrameEncode`] for an empty payload and [`PackError::ChecksumRequired`]
    /// for a plaintext zstd pack without `pcm_crc32c`.
    pub fn push_stored(
        &mut self,
        start: Timestamp,
        payload: &[u8],
        plain_len: u32,
        pcm_crc32c: Option<u32>,
    ) -> Result<Vec<u8>, PackError> {
        let (chunk, plain_len, sample_count) = self.check_chunk(start, plain_len as usize)?;
        if payload.is_empty() {
            return Err(PackError::FrameEncode {
                chunk,
                source: CodecError::new("the stored payload is empty"),
            });
        }
        let crc32c = match self.header.codec() {
            Codec::Pcm16Le => {
                if payload.len() as u64 != u64::from(plain_len) {
                    return Err(PackError::FrameLength {
                        chunk,
                        expected: u64::from(plain_len),
                        got: payload.len() as u64,
                    });
                }
                crc32c::crc32c(payload)
            }
            // The CRC of a lossy codec's chunk covers its stored frame.
            Codec::Opus => crc32c::crc32c(payload),
            Codec::ZstdPcm16Le => match (pcm_crc32c, self.sealer.is_some()) {
                (Some(crc), _) => crc,
                (None, true) => 0,
                (None, false) => return Err(PackError::ChecksumRequired { chunk }),
            },
        };
        self.push_payload(start, chunk, plain_len, sample_count, payload, crc32c)
    }

    /// Checks a chunk of `len` PCM bytes starting at `start` against the limits and the
    /// previous chunk; returns its number, plain length and sample count.
    fn check_chunk(&self, start: Timestamp, len: usize) -> Result<(u32, u32, u32), PackError> {
        let chunk = self.chunk_count();
        if chunk >= MAX_CHUNKS {
            return Err(PackError::TooManyChunks { max: MAX_CHUNKS });
        }
        if len == 0 {
            return Err(PackError::EmptyChunk { chunk });
        }
        let block_align = self.header.block_align();
        let plain_len = match u32::try_from(len) {
            Ok(len) if len <= MAX_CHUNK_BYTES => len,
            _ => {
                return Err(PackError::ChunkTooLong {
                    chunk,
                    len,
                    max: MAX_CHUNK_BYTES,
                });
            }
        };
        if plain_len % block_align != 0 {
            return Err(PackError::MisalignedPcm {
                chunk,
                len,
                block_align,
            });
        }
        let sample_count = plain_len / block_align;
        if let Some(previous) = self.entries.last() {
            let previous_end = self.end_of(previous);
            if start < previous_end {
                return Err(PackError::Overlap {
                    chunk,
                    start,
                    previous_end,
                });
            }
        }
        start
            .as_millis()
            .checked_add(self.header.duration_ms(sample_count))
            .and_then(Timestamp::from_millis)
            .ok_or(PackError::EndOutOfRange { chunk, start })?;
        Ok((chunk, plain_len, sample_count))
    }

    /// Seals (when sealing) and records one checked chunk whose stored payload is `payload`;
    /// `crc32c` goes into the entry of a plaintext pack.
    fn push_payload(
        &mut self,
        start: Timestamp,
        chunk: u32,
        plain_len: u32,
        sample_count: u32,
        payload: &[u8],
        crc32c: u32,
    ) -> Result<Vec<u8>, PackError> {
        let overhead = self.sealer.as_ref().map_or(0, |s| s.overhead());
        let stored_len = payload
            .len()
            .checked_add(overhead)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(PackError::ChunkTooLong {
                chunk,
                len: plain_len as usize,
                max: MAX_CHUNK_BYTES,
            })?;
        let offset = if self.entries.is_empty() {
            HEADER_LEN as u64
        } else {
            self.next_offset
        };
        let entry = IndexEntry {
            start,
            sample_count,
            offset,
            stored_len,
            plain_len,
            crc32c: if self.sealer.is_some() { 0 } else { crc32c },
        };
        let mut out = Vec::with_capacity(HEADER_LEN + stored_len as usize);
        if self.entries.is_empty() {
            out.extend_from_slice(&self.header_bytes);
        }
        match &mut self.sealer {
            None => out.extend_from_slice(payload),
            Some(sealer) => {
                let part = PackPart::Frame { chunk };
                let aad = frame_aad(&self.header_bytes, &entry);
                let sealed = sealer
                    .seal(chunk, &aad, payload, false)
                    .map_err(|source| PackError::Seal { part, source })?;
                if sealed.len() != stored_len as usize {
                    return Err(PackError::SealLength {
                        part,
                        expected: u64::from(stored_len),
                        got: sealed.len() as u64,
                    });
                }
                out.extend_from_slice(&sealed);
            }
        }
        self.next_offset = entry.frame_range().end;
        self.entries.push(entry);
        Ok(out)
    }

    /// Ends the pack: returns the index (sealed as the last segment when sealing) and the
    /// trailer, the last bytes of the object. Fails with [`PackError::EmptyPack`] when no chunk
    /// was pushed.
    pub fn finish(mut self) -> Result<Vec<u8>, PackError> {
        if self.entries.is_empty() {
            return Err(PackError::EmptyPack);
        }
        let count = self.chunk_count();
        let body = encode_index(&self.entries);
        let stored = match &mut self.sealer {
            None => body,
            Some(sealer) => {
                let expected = index_plain_len(count) + sealer.overhead() as u64;
                let sealed = sealer
                    .seal(count, &self.header_bytes, &body, true)
                    .map_err(|source| PackError::Seal {
                        part: PackPart::Index,
                        source,
                    })?;
                if sealed.len() as u64 != expected {
                    return Err(PackError::SealLength {
                        part: PackPart::Index,
                        expected,
                        got: sealed.len() as u64,
                    });
                }
                sealed
            }
        };
        let index_len = u32::try_from(stored.len()).map_err(|_| PackError::SealLength {
            part: PackPart::Index,
            expected: index_plain_len(count),
            got: stored.len() as u64,
        })?;
        let trailer = encode_trailer(&self.header_bytes, self.next_offset, index_len, count);
        let mut out = stored;
        out.extend_from_slice(&trailer);
        Ok(out)
    }
}

/// End (exclusive) of the audio of a chunk of `samples` sample frames at `sample_rate` that
/// starts at `start`: `start + ceil(samples × 1000 / sample_rate)` ms — the `END` of a pack
/// name when this is the last chunk. `None` for a zero rate or past [`Timestamp::MAX`].
pub fn pack_name_end(start: Timestamp, samples: u32, sample_rate: u32) -> Option<Timestamp> {
    if sample_rate == 0 {
        return None;
    }
    let ms = (u64::from(samples) * 1000).div_ceil(u64::from(sample_rate));
    start
        .as_millis()
        .checked_add(ms)
        .and_then(Timestamp::from_millis)
}
