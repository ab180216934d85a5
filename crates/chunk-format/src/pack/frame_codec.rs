//! The frame-codec hook: how the (codec-free) pack container asks for a chunk's PCM to be
//! encoded to a frame and a frame decoded back, for codecs it does not implement itself.
//!
//! `chunk-format` links no Opus library; [`super::Codec::Opus`] packs are written and read
//! through a [`FrameCodec`] the caller supplies (`chunk-service` implements it with Omi's Opus
//! settings). The container keeps the exact timing in the index (`sample_count`) and checks that
//! every decoded frame is exactly `plain_len` bytes, whatever the codec produces.

use std::error::Error;
use std::fmt;

/// Why a frame could not be encoded or decoded, as reported by a [`FrameCodec`].
///
/// Opaque on purpose, like [`super::SealError`]: the container only says which chunk failed;
/// the codec's own error is kept and shown.
pub struct CodecError(Box<dyn Error + Send + Sync + 'static>);

impl CodecError {
    /// Wraps the codec's own error (or a message).
    pub fn new(source: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> CodecError {
        CodecError(source.into())
    }

    /// The wrapped error.
    pub fn inner(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Debug for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CodecError").field(&self.0).finish()
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for CodecError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

/// Encodes one chunk's PCM to an opaque frame and decodes such a frame back, for a codec the
/// container does not implement (today: [`super::Codec::Opus`]).
///
/// Each frame must be decodable alone. Lossy codecs are allowed: the container does not ask for
/// the PCM back, only for exactly `plain_len` bytes (the chunk's `sample_count × block_align`).
pub trait FrameCodec: Send + Sync {
    /// Encodes one chunk of interleaved PCM16LE to one frame (at least one byte).
    fn encode(&self, pcm: &[u8]) -> Result<Vec<u8>, CodecError>;

    /// Decodes one frame to PCM16LE that must be exactly `plain_len` bytes; should refuse a
    /// frame that would decode to more without allocating for it (`plain_len` is at most
    /// [`super::MAX_CHUNK_BYTES`]). The container checks the length again.
    fn decode(&self, frame: &[u8], plain_len: u32) -> Result<Vec<u8>, CodecError>;
}
