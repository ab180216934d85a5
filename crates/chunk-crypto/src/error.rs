//! The one error type of this crate.

use chunk_format::frames::FrameError;

use crate::KeyId;

/// Everything that can go wrong while deriving keys, sealing or opening.
///
/// Frame-level variants name the frame (Omi: its 0-based index in the object; pack: its STREAM
/// counter). The store and service add the object path around this error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The master secret is shorter than [`crate::MIN_SECRET_LEN`] bytes.
    #[error("master secret is {len} bytes long; at least {min} bytes are required", min = crate::MIN_SECRET_LEN)]
    ShortSecret {
        /// The rejected length.
        len: usize,
    },
    /// The environment variable that should hold the master secret is not set.
    #[error("environment variable {var} (the master secret) is not set")]
    MissingEnv {
        /// The variable's name.
        var: String,
    },
    /// The environment variable that should hold the master secret is not valid UTF-8.
    #[error("environment variable {var} (the master secret) is not valid UTF-8")]
    EnvNotUnicode {
        /// The variable's name.
        var: String,
    },
    /// The keyring holds no secret with this id (never added, or dropped).
    #[error("no master secret with key id {id} in the keyring")]
    UnknownKey {
        /// The id asked for.
        id: KeyId,
    },
    /// The keyring already holds a secret under this id.
    #[error("key id {id} is already in the keyring")]
    DuplicateKey {
        /// The id.
        id: KeyId,
    },
    /// The active key (or the Omi key) cannot be removed; choose another one first
    /// ([`crate::Keyring::set_active`], [`crate::Keyring::set_omi_key`]).
    #[error("key id {id} is in use for writing (active or Omi key) and cannot be removed")]
    KeyInUse {
        /// The id.
        id: KeyId,
    },
    /// The key id is retired: it opens data only to re-seal it under the active key, never to
    /// serve it ([`crate::Keyring::retire`]).
    #[error(
        "key id {id} is retired: it opens data only to re-seal it under the active key (compaction)"
    )]
    KeyRetired {
        /// The id.
        id: KeyId,
    },
    /// A key id string is not `k` followed by a decimal `u32`.
    #[error("invalid key id {text:?}: expected `k` followed by a number, e.g. `k1`")]
    BadKeyId {
        /// The rejected text.
        text: String,
    },
    /// The operating system's random number generator failed.
    #[error("the OS random number generator failed: {0}")]
    Rng(getrandom::Error),
    /// A plaintext is too long to seal as one frame.
    #[error("a plaintext of {len} bytes is too long to seal as one frame")]
    PlaintextTooLong {
        /// The plaintext length.
        len: usize,
    },
    /// An Omi object (`.enc`, `.batch.enc`, `.opus.enc`) has 0 bytes: it holds no frame, so it
    /// is refused rather than read as zero chunks (Omi never writes an empty object; a cut-off
    /// upload or a replaced object can leave one).
    #[error("the sealed object is empty (0 frames): truncated?")]
    EmptyObject,
    /// An Omi object's framing is malformed at this frame.
    #[error("frame {index}: malformed framing: {source}")]
    Frame {
        /// Index of the frame (0-based).
        index: usize,
        /// What was wrong with the framing.
        #[source]
        source: FrameError,
    },
    /// A sealed frame is shorter than its fixed overhead (nonce and/or tag).
    #[error("frame {index}: {len} sealed bytes is shorter than the {min}-byte minimum")]
    FrameTooShort {
        /// Index (Omi) or STREAM counter (pack) of the frame.
        index: usize,
        /// Its length.
        len: usize,
        /// The smallest valid length.
        min: usize,
    },
    /// Authentication failed: wrong key, wrong position or associated data, or altered bytes.
    #[error(
        "frame {index}: authentication failed (wrong key, wrong position or header, or altered bytes)"
    )]
    Decrypt {
        /// Index (Omi) or STREAM counter (pack) of the frame.
        index: usize,
    },
    /// A pack sealer was asked to seal a frame out of order.
    #[error("pack frames must be sealed in order: expected frame {expected}, got {got}")]
    OutOfOrder {
        /// The counter the sealer expects next.
        expected: u32,
        /// The counter it was given.
        got: u32,
    },
    /// A pack sealer was asked to seal a frame after the last one.
    #[error("frame {got}: the pack's last frame was already sealed")]
    AfterLast {
        /// The counter it was given.
        got: u32,
    },
    /// No key id is left above the highest one in the ring (`k4294967295` is taken).
    #[error("no key id is left above the highest one in the ring")]
    KeyIdsExhausted,
    /// A pack header names a key scheme this version cannot derive keys for.
    #[error("the pack's key scheme (header version {version}) is not known to this reader")]
    UnknownScheme {
        /// The header version that records the scheme.
        version: u8,
    },
    /// A pack sealer was asked for a non-final frame at counter `u32::MAX`, the value kept
    /// for the final segment.
    #[error("frame counter 4294967295 is reserved for the pack's final segment")]
    CounterExhausted,
}

/// Shorthand for results of this crate.
pub type Result<T, E = CryptoError> = std::result::Result<T, E>;
