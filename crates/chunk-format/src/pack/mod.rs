//! chunkvault's native pack container: many chunks in one object, each with its exact start
//! time, each readable alone with two ranged reads, optionally zstd-compressed and sealed.
//!
//! Layout of version 1 (little-endian throughout; every byte is documented in docs/FORMAT.md,
//! section "Pack container"):
//!
//! ```text
//! header (48) | frame 0 | frame 1 | … | frame n-1 | index | trailer (72)
//! ```
//!
//! - the **header** records magic `CVPK`, version 1, [`Codec`], sample rate, channels and, for a
//!   sealed pack, the [`SealInfo`] (key id, salt, nonce prefix);
//! - one **frame** per chunk, independently decodable: the PCM as it is, one zstd frame, or
//!   (codec Opus) the bytes of a caller-supplied [`FrameCodec`]; sealed packs seal each frame as
//!   its own STREAM segment;
//! - the **index** holds one 32-byte [`IndexEntry`] per chunk (start, sample count, offset,
//!   stored length, plain length, CRC-32C of the PCM — of the stored frame for Opus — in
//!   plaintext packs); sealed packs seal it as the last segment;
//! - the fixed **trailer** repeats the header and locates the index, so a reader needs only the
//!   object's last bytes ([`TAIL_READ_LEN`]) and then one ranged read per chunk.
//!
//! A pack is named `START-END.pack`: START is the first chunk's start, END the end of the last
//! chunk's audio (exclusive), so a listing alone answers which packs overlap a time range.
//!
//! Reading one chunk with two ranged reads (here simulated on an in-memory object):
//!
//! ```
//! use chunk_format::Timestamp;
//! use chunk_format::pack::{PackConfig, PackEncoder, PackTail};
//!
//! // Write: the encoder returns bytes to append as it goes (bounded memory).
//! let mut enc = PackEncoder::new(PackConfig::default(), None)?;
//! let mut object = Vec::new();
//! for (i, start) in [0u64, 5_000, 12_000].into_iter().enumerate() {
//!     let pcm = vec![i as u8; 16_000]; // 0.5 s of 16 kHz mono PCM16
//!     object.extend(enc.push_chunk(Timestamp::from_millis(start).unwrap(), &pcm)?);
//! }
//! object.extend(enc.finish()?);
//!
//! // Read 1: the tail. Read 2: one frame.
//! let len = object.len() as u64;
//! let tail = &object[(len - PackTail::read_len(len)) as usize..];
//! let tail = PackTail::new(tail, len)?;
//! assert!(!tail.header().is_encrypted()); // else build an opener from tail.header().seal()
//! let index = tail.index(None)?;
//! assert_eq!(index.object_name()?.to_string(), "0.000-12.500.pack");
//! let range = index.frame_range(2).unwrap();
//! let frame = &object[range.start as usize..range.end as usize];
//! assert_eq!(index.decode_frame(2, frame, None)?, vec![2u8; 16_000]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Parsers are total: every length and offset is checked against the object length and the
//! bytes actually given before anything is allocated; zstd output is bounded by the entry's
//! plain length (at most [`MAX_CHUNK_BYTES`]).

mod codec;
mod encoder;
mod error;
mod frame_codec;
mod header;
mod index;
mod seal;

#[cfg(test)]
mod tests;

pub use encoder::{PackConfig, PackEncoder, pack_name_end};
pub use error::{PackError, PackPart};
pub use frame_codec::{CodecError, FrameCodec};
pub use header::{Codec, KeyScheme, PackHeader, SealInfo};
pub use index::{IndexEntry, PackIndex, PackTail};
pub use seal::{SealError, SegmentOpener, SegmentSealer};

/// The magic at offset 0 and at the very end of every pack: ASCII `CVPK`.
pub const MAGIC: [u8; 4] = *b"CVPK";

/// The newest container version (header byte 4): what this code writes for sealed packs.
///
/// Version 2 differs from version 1 only in how a sealed pack's object key is derived
/// ([`KeyScheme`]); readers read both.
pub const VERSION: u8 = 2;

/// The first container version: what this code writes for plaintext packs, and the version of
/// every pack sealed under [`KeyScheme::V1`].
pub const VERSION_1: u8 = 1;

/// Length of the header (and of its copy in the trailer).
pub const HEADER_LEN: usize = 48;

/// Length of one encoded [`IndexEntry`].
pub const ENTRY_LEN: usize = 32;

/// Fixed part of the plaintext index: the `u32` chunk count and the `u32` CRC-32C.
pub const INDEX_FIXED_LEN: usize = 8;

/// Length of the trailer: a copy of the header, then index offset (8), index length (4), chunk
/// count (4), CRC-32C (4) and the magic (4).
pub const TRAILER_LEN: usize = HEADER_LEN + 24;

/// Length of the HKDF salt in [`SealInfo`].
pub const SALT_LEN: usize = 16;

/// Length of the STREAM nonce prefix in [`SealInfo`].
pub const NONCE_PREFIX_LEN: usize = 7;

/// Most chunks one pack may hold (2^20: an index of 32 MiB, 60 days of 5 s chunks).
pub const MAX_CHUNKS: u32 = 1 << 20;

/// Most PCM bytes one chunk may hold (64 MiB, 35 minutes of 16 kHz mono); also the bound on
/// memory a frame's decoding may take.
pub const MAX_CHUNK_BYTES: u32 = 64 << 20;

/// Highest sample rate a header may record.
pub const MAX_SAMPLE_RATE: u32 = 768_000;

/// The smallest possible pack: header, a one-byte frame, a one-entry index and the trailer.
pub const MIN_PACK_LEN: u64 = (HEADER_LEN + 1 + INDEX_FIXED_LEN + ENTRY_LEN + TRAILER_LEN) as u64;

/// How many bytes from the end a reader should fetch first: 16 KiB, which holds the trailer and
/// the index of a plaintext pack of up to 509 chunks (sealed: 508), i.e. 42 minutes of 5 s
/// chunks. Bigger packs answer [`PackError::NeedMore`] and cost one more read.
pub const TAIL_READ_LEN: u64 = 16 * 1024;

/// The zstd level [`PackConfig`] uses unless told otherwise (chosen from measurements on
/// speech, docs/BENCHMARKS.md "Pack (zstd)").
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;
