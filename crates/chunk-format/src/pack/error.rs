//! The one error type of the pack container.

use crate::timestamp::Timestamp;

use super::frame_codec::CodecError;
use super::header::Codec;
use super::seal::SealError;

/// Which part of a pack a checksum or a sealed segment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PackPart {
    /// The 48-byte header at offset 0.
    Header,
    /// The copy of the header inside the trailer.
    TrailerHeader,
    /// The trailer's locator (index offset, length, chunk count).
    Trailer,
    /// The index (its plaintext body, or its sealed segment).
    Index,
    /// The frame of one chunk.
    Frame {
        /// The chunk's position in the pack (0-based; its STREAM counter when sealed).
        chunk: u32,
    },
}

impl std::fmt::Display for PackPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PackPart::Header => f.write_str("header"),
            PackPart::TrailerHeader => f.write_str("trailer's header copy"),
            PackPart::Trailer => f.write_str("trailer"),
            PackPart::Index => f.write_str("index"),
            PackPart::Frame { chunk } => write!(f, "frame of chunk {chunk}"),
        }
    }
}

/// Everything that can go wrong while writing or reading a pack.
///
/// Offsets are byte offsets in the pack object; the store and service add the object path
/// around this error. [`PackError::NeedMore`] is not a defect: it asks the caller for a longer
/// tail (see [`super::PackTail::parse`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// The tail given does not hold the index; read the object again from `from_offset` to its
    /// end and parse that.
    #[error(
        "the pack index starts at offset {from_offset}, before the tail given; read from there"
    )]
    NeedMore {
        /// Where the longer tail must start.
        from_offset: u64,
    },
    /// The object is shorter than the smallest possible pack.
    #[error(
        "a pack of {object_len} bytes is shorter than the smallest possible pack ({min} bytes)"
    )]
    TooShort {
        /// The object's length.
        object_len: u64,
        /// The smallest valid pack length.
        min: u64,
    },
    /// The tail buffer is shorter than the trailer or longer than the object.
    #[error(
        "a tail of {tail_len} bytes does not fit a pack of {object_len} bytes (need {min}..=object length)"
    )]
    BadTail {
        /// Length of the tail given.
        tail_len: u64,
        /// The object's length.
        object_len: u64,
        /// The shortest usable tail (the trailer).
        min: u64,
    },
    /// A magic number is not `CVPK`.
    #[error("{part} at offset {offset}: magic {found:02x?} is not \"CVPK\" (not a pack)")]
    BadMagic {
        /// Where the magic was expected.
        part: PackPart,
        /// Its offset.
        offset: u64,
        /// The four bytes found.
        found: [u8; 4],
    },
    /// The header's version byte names a version this reader does not know.
    #[error(
        "{part} at offset {offset}: pack version {version} is not supported (this reader knows version 1)"
    )]
    UnsupportedVersion {
        /// Header or trailer copy.
        part: PackPart,
        /// Offset of the version byte.
        offset: u64,
        /// The version found.
        version: u8,
    },
    /// The header's codec byte names no codec this reader knows.
    #[error(
        "{part} at offset {offset}: unknown codec {codec} (known: 0 = PCM16LE, 1 = zstd PCM16LE, 2 = Opus)"
    )]
    UnknownCodec {
        /// Header or trailer copy.
        part: PackPart,
        /// Offset of the codec byte.
        offset: u64,
        /// The codec id found.
        codec: u8,
    },
    /// A header field holds a value the format does not allow.
    #[error("{part} at offset {offset}: {reason}")]
    BadHeader {
        /// Header or trailer copy.
        part: PackPart,
        /// Offset of the offending field.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
    },
    /// A CRC-32C does not match the bytes it covers.
    #[error(
        "{part} at offset {offset}: checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
    )]
    Checksum {
        /// The part whose checksum failed.
        part: PackPart,
        /// Offset of that part.
        offset: u64,
        /// The checksum stored in the pack.
        stored: u32,
        /// The checksum of the bytes found.
        computed: u32,
    },
    /// The leading header differs from the trailer's copy.
    #[error(
        "the header at offset 0 differs from its copy in the trailer at offset {trailer_offset}"
    )]
    HeaderMismatch {
        /// Offset of the trailer.
        trailer_offset: u64,
    },
    /// The trailer's locator does not describe a possible index.
    #[error(
        "trailer at offset {offset}: {reason} (index offset {index_offset}, length {index_len}, {chunk_count} chunks)"
    )]
    BadLocator {
        /// Offset of the trailer.
        offset: u64,
        /// What is wrong.
        reason: &'static str,
        /// The index offset the trailer records.
        index_offset: u64,
        /// The index length the trailer records.
        index_len: u32,
        /// The chunk count the trailer records.
        chunk_count: u32,
    },
    /// The index body's chunk count differs from the trailer's.
    #[error("index at offset {offset}: holds {in_index} chunks, the trailer says {in_trailer}")]
    IndexCount {
        /// Offset of the index.
        offset: u64,
        /// The count in the trailer.
        in_trailer: u32,
        /// The count in the index body.
        in_index: u32,
    },
    /// An index entry is impossible (wrong offset, length, size or time).
    #[error("index entry of chunk {chunk}: {reason}")]
    BadEntry {
        /// The chunk (0-based).
        chunk: u32,
        /// What is wrong.
        reason: &'static str,
    },
    /// A chunk starts before the previous one ends (reader: in the index; writer: pushed).
    #[error("chunk {chunk} starts at {start}, before the previous chunk ends at {previous_end}")]
    Overlap {
        /// The chunk (0-based).
        chunk: u32,
        /// Its start.
        start: Timestamp,
        /// The end of the previous chunk (exclusive).
        previous_end: Timestamp,
    },
    /// The pack is sealed but no opener was given.
    #[error("the pack is encrypted (key id {key_id}); an opener is required")]
    OpenerRequired {
        /// The key id the header records.
        key_id: u32,
    },
    /// An opener was given but the pack is plaintext (refused so that a plaintext pack cannot
    /// pass for a sealed one).
    #[error("an opener was given but the pack is not encrypted")]
    NotEncrypted,
    /// A sealed segment failed to open: wrong key, moved, truncated, spliced or altered.
    #[error("{part} at offset {offset}: cannot open the sealed segment: {source}")]
    Open {
        /// The index or a frame.
        part: PackPart,
        /// Offset of the segment.
        offset: u64,
        /// What the opener reported.
        #[source]
        source: SealError,
    },
    /// A sealer failed to seal a segment.
    #[error("{part}: sealing failed: {source}")]
    Seal {
        /// The index or a frame.
        part: PackPart,
        /// What the sealer reported.
        #[source]
        source: SealError,
    },
    /// A sealer or opener returned a length other than the one its overhead promises.
    #[error(
        "{part}: the sealer/opener returned {got} bytes, {expected} expected from its overhead"
    )]
    SealLength {
        /// The index or a frame.
        part: PackPart,
        /// The length the overhead implies.
        expected: u64,
        /// The length returned.
        got: u64,
    },
    /// A frame's bytes do not have the length its index entry records.
    #[error("frame of chunk {chunk}: {got} bytes given, the index records {expected}")]
    FrameLength {
        /// The chunk (0-based).
        chunk: u32,
        /// The stored length in the index.
        expected: u64,
        /// The length given.
        got: u64,
    },
    /// A zstd frame is malformed or does not decode to the recorded length.
    #[error("frame of chunk {chunk} at offset {offset}: bad zstd data: {reason}")]
    Zstd {
        /// The chunk (0-based).
        chunk: u32,
        /// Offset of the frame.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// There is no chunk with this position in the pack.
    #[error("no chunk {chunk}: the pack holds {count}")]
    NoSuchChunk {
        /// The position asked for.
        chunk: usize,
        /// Number of chunks in the pack.
        count: usize,
    },
    /// The encoder configuration is invalid.
    #[error("invalid pack configuration: {reason}")]
    BadConfig {
        /// What is wrong.
        reason: String,
    },
    /// A pushed chunk holds no audio.
    #[error("chunk {chunk} is empty; a pack holds only chunks with audio")]
    EmptyChunk {
        /// The chunk (0-based).
        chunk: u32,
    },
    /// A pushed chunk's length is not a whole number of sample frames.
    #[error("chunk {chunk} is {len} bytes, not a multiple of the {block_align}-byte sample frame")]
    MisalignedPcm {
        /// The chunk (0-based).
        chunk: u32,
        /// Its length in bytes.
        len: usize,
        /// Bytes per sample frame (2 × channels).
        block_align: u32,
    },
    /// A pushed chunk is longer than [`super::MAX_CHUNK_BYTES`].
    #[error("chunk {chunk} is {len} bytes; a pack chunk holds at most {max}")]
    ChunkTooLong {
        /// The chunk (0-based).
        chunk: u32,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// The pack already holds [`super::MAX_CHUNKS`] chunks.
    #[error("a pack holds at most {max} chunks")]
    TooManyChunks {
        /// The limit.
        max: u32,
    },
    /// A pushed chunk would end after [`Timestamp::MAX`].
    #[error("chunk {chunk} starting at {start} ends after the largest timestamp")]
    EndOutOfRange {
        /// The chunk (0-based).
        chunk: u32,
        /// Its start.
        start: Timestamp,
    },
    /// `finish` was called before any chunk was pushed; a pack holds at least one.
    #[error("a pack needs at least one chunk")]
    EmptyPack,
    /// zstd failed to compress a chunk.
    #[error("chunk {chunk}: zstd compression failed: {reason}")]
    Compress {
        /// The chunk (0-based).
        chunk: u32,
        /// What zstd reported.
        reason: String,
    },
    /// The pack's codec is implemented outside the container (Opus) and no
    /// [`super::FrameCodec`] was given to encode or decode its frames.
    #[error(
        "the pack's frames are {codec}; encoding or decoding them needs a frame codec (none was given)"
    )]
    CodecRequired {
        /// The pack's codec.
        codec: Codec,
    },
    /// [`super::PackEncoder::push_encoded_frame`] on a pack whose codec the container
    /// implements itself (PCM, zstd): its frames are made from the PCM.
    #[error(
        "the pack's frames are {codec}, which the container encodes itself; an encoded frame can only be given for a codec coded by a frame codec (Opus)"
    )]
    EncodedFrameUnsupported {
        /// The pack's codec.
        codec: Codec,
    },
    /// [`super::PackEncoder::push_stored`] of a zstd payload into a plaintext pack without
    /// the CRC-32C of its decoded PCM, which the entry must record.
    #[error(
        "chunk {chunk}: a stored zstd payload for a plaintext pack needs the CRC-32C of its PCM"
    )]
    ChecksumRequired {
        /// The chunk (0-based).
        chunk: u32,
    },
    /// The frame codec failed to encode a chunk (or returned an empty frame).
    #[error("chunk {chunk}: frame encoding failed: {source}")]
    FrameEncode {
        /// The chunk (0-based).
        chunk: u32,
        /// What the codec reported.
        #[source]
        source: CodecError,
    },
    /// The frame codec failed to decode a frame.
    #[error("frame of chunk {chunk} at offset {offset}: cannot decode: {source}")]
    FrameDecode {
        /// The chunk (0-based).
        chunk: u32,
        /// Offset of the frame.
        offset: u64,
        /// What the codec reported.
        #[source]
        source: CodecError,
    },
    /// The frame codec decoded a frame to another length than the index records.
    #[error(
        "frame of chunk {chunk} at offset {offset}: decodes to {got} bytes, the index records {expected}"
    )]
    DecodedLength {
        /// The chunk (0-based).
        chunk: u32,
        /// Offset of the frame.
        offset: u64,
        /// The plain length in the index.
        expected: u64,
        /// The length decoded.
        got: u64,
    },
}
