//! The sealing hook: how the (crypto-free) pack container asks for segments to be sealed and
//! opened.
//!
//! `chunk-format` has no crypto dependency; `chunk-crypto` implements these traits for its STREAM
//! sealer and opener. A sealed pack has `n + 1` segments: frame `i` is segment `i` (never last),
//! the index is segment `n` (last). The container passes the associated data; see
//! docs/FORMAT.md ("Pack container") for exactly which bytes.

use std::error::Error;
use std::fmt;

use super::header::SealInfo;

/// Why a segment could not be sealed or opened, as reported by the sealer or opener.
///
/// Opaque on purpose: the container only needs to say which segment failed; the source error
/// (e.g. `chunk-crypto`'s authentication failure) is kept as [`Error::source`].
pub struct SealError(Box<dyn Error + Send + Sync + 'static>);

impl SealError {
    /// Wraps the sealer's or opener's own error (or a message).
    pub fn new(source: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> SealError {
        SealError(source.into())
    }

    /// The wrapped error.
    pub fn inner(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.0
    }
}

impl fmt::Debug for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SealError").field(&self.0).finish()
    }
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Error for SealError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

/// Seals the segments of one pack, in order: frames `0..n` with `last = false`, then the index
/// with counter `n` and `last = true`.
///
/// The encoder calls [`SegmentSealer::seal_info`] once, to write the header (which is part of
/// every segment's associated data), and checks that every sealed segment is exactly
/// `plaintext.len() + overhead()` bytes.
pub trait SegmentSealer: Send {
    /// The parameters an opener needs, recorded in the header (key id, salt, nonce prefix).
    fn seal_info(&self) -> SealInfo;

    /// Bytes a sealed segment has beyond its plaintext (16 for AES-256-GCM).
    fn overhead(&self) -> usize;

    /// Seals segment `counter` with associated data `aad`; `last` marks the final segment.
    fn seal(
        &mut self,
        counter: u32,
        aad: &[u8],
        plaintext: &[u8],
        last: bool,
    ) -> Result<Vec<u8>, SealError>;
}

/// Opens single segments of one sealed pack, in any order (for ranged reads).
///
/// Build it from the header's [`SealInfo`] (see [`super::PackTail::header`]); the container
/// passes the counter, the `last` flag and the associated data each segment was sealed with.
pub trait SegmentOpener: Send + Sync {
    /// Bytes a sealed segment has beyond its plaintext; must equal the sealer's.
    fn overhead(&self) -> usize;

    /// Opens segment `counter`; fails unless it was sealed at that position, with that `last`
    /// flag and that associated data, under this pack's key.
    fn open(
        &self,
        counter: u32,
        aad: &[u8],
        sealed: &[u8],
        last: bool,
    ) -> Result<Vec<u8>, SealError>;
}
