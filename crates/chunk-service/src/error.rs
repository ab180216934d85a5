//! The service's error type: what went wrong, and with which object or user.

use chunk_format::Timestamp;
use chunk_format::omi_opus::OpusContainerError;
use chunk_format::pack::PackError;
use chunk_store::StoreError;

use crate::codec::opus::OpusError;

/// Everything a service call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The object store failed (the error names the path and operation).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An id was rejected before it could become a path.
    #[error(transparent)]
    Id(#[from] chunk_store::IdError),
    /// The user database failed.
    #[error(transparent)]
    Level(#[from] crate::level::LevelLookupError),
    /// Nothing to download: no requested timestamp has audio (Omi's `FileNotFoundError`).
    #[error("no audio found for conversation {conversation} of user {uid}")]
    NoAudio {
        /// The user.
        uid: String,
        /// The conversation.
        conversation: String,
    },
    /// Two objects of one request hold audio in different formats (sample rate or channels),
    /// which no single output can hold; nothing was written. Omi objects carry no format of
    /// their own and count as the rate the call or the service configuration gives.
    #[error(
        "{first} is {first_rate} Hz × {first_channels} channel(s) but {second} is {second_rate} Hz × {second_channels} channel(s); one download or pack cannot mix them"
    )]
    MixedFormats {
        /// The first object seen.
        first: String,
        /// Its sample rate.
        first_rate: u32,
        /// Its channels.
        first_channels: u8,
        /// The object that disagrees.
        second: String,
        /// Its sample rate.
        second_rate: u32,
        /// Its channels.
        second_channels: u8,
    },
    /// A download's output would span more audio time than
    /// [`crate::DownloadOptions::max_span`]; nothing was produced.
    #[error(
        "the download of conversation {conversation} of user {uid} would span {span_ms} ms of audio, more than the limit of {max_ms} ms; ask for a shorter range"
    )]
    SpanTooLong {
        /// The user.
        uid: String,
        /// The conversation.
        conversation: String,
        /// The span the request would produce.
        span_ms: u64,
        /// The limit.
        max_ms: u64,
    },
    /// An object listed for a download was gone when it was read (deleted meanwhile).
    #[error("{path} vanished between the listing and the read")]
    Vanished {
        /// The object path.
        path: String,
    },
    /// An object claims to decode to more audio in one piece than
    /// [`crate::ServiceConfig::max_decoded_chunk`] allows; refused before anything was
    /// decoded (a decompression bomb, or a chunk far longer than any device sends).
    #[error(
        "{path}: {what} would decode to {claimed} bytes, more than the limit of {limit} bytes per chunk"
    )]
    TooLarge {
        /// The object path.
        path: String,
        /// Which part of the object (e.g. "chunk 3", "the object").
        what: String,
        /// The decoded bytes it claims.
        claimed: u64,
        /// The limit.
        limit: u64,
    },
    /// A plaintext pack where sealing is required (its user is at level `enhanced`, or the
    /// deployment sets [`crate::ServiceConfig::require_sealed`]): anyone who can write to the
    /// bucket can make a plaintext pack, so it is never served, merged, rewritten or accepted
    /// as an identical retry.
    #[error(
        "{path}: plaintext pack where sealing is required (user at level enhanced, or sealing required by the deployment); refusing it"
    )]
    Unsealed {
        /// The object path.
        path: String,
    },
    /// An object with this name exists and holds different audio; the service never overwrites.
    #[error("{path} already exists with different content; refusing to overwrite")]
    Conflict {
        /// The object path.
        path: String,
    },
    /// An `enhanced` user's audio must be sealed but the service has no key material.
    #[error(
        "user {uid} is at level enhanced but the service has no key material; refusing to store plaintext"
    )]
    NoKeyMaterial {
        /// The user.
        uid: String,
    },
    /// The configuration asks for encryption but no key ring was given.
    #[error("encryption is required by the configuration but no key material was given")]
    MissingKeyring,
    /// Decryption or key lookup failed for an object.
    #[error("{path}: {source}")]
    Crypto {
        /// The object path.
        path: String,
        /// What failed.
        source: chunk_crypto::CryptoError,
    },
    /// An object's bytes could not be decoded as its name says.
    #[error("{path}: {source}")]
    Decode {
        /// The object path.
        path: String,
        /// What was wrong.
        #[source]
        source: DecodeError,
    },
    /// The call's arguments were rejected.
    #[error("invalid request: {0}")]
    InvalidInput(String),
}

/// Why an object's bytes do not decode as its name says ([`ServiceError::Decode`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The pack container is malformed, fails a check (CRC, authentication, claims), or
    /// cannot be opened.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// The Omi Opus container is malformed.
    #[error(transparent)]
    OpusContainer(#[from] OpusContainerError),
    /// Opus decoding (or, to compare a retry, encoding) failed.
    #[error(transparent)]
    Opus(#[from] OpusError),
    /// The object is sealed but the service has no key material.
    #[error("sealed object but the service has no key material")]
    NoKeyMaterial,
    /// The object holds nothing (a sealed object truncated to nothing, say).
    #[error("empty object: holds no audio")]
    Empty,
    /// A pack's index disagrees with its name.
    #[error("the pack's index covers {start}..{end} but its name says {name}")]
    NameMismatch {
        /// The index's first chunk start.
        start: Timestamp,
        /// The index's end.
        end: Timestamp,
        /// The object's name.
        name: String,
    },
    /// A ranged read returned fewer bytes than the pack's index says chunk `chunk` takes.
    #[error("short ranged read for chunk {chunk}")]
    ShortRead {
        /// The chunk's position in the pack.
        chunk: usize,
    },
    /// A pack written and read back differs from what was written.
    #[error("the pack read back differs from what was written")]
    ReadBackDiffers,
    /// The object is not of a kind this decoder reads (its name says `kind`).
    #[error("a {kind} object holds no {wanted}")]
    WrongKind {
        /// What the name says.
        kind: String,
        /// What the decoder reads.
        wanted: &'static str,
    },
    /// The decoding task panicked or was cancelled.
    #[error("the decoding task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The decoder panicked on the decode pool (a bug: decoders are total).
    #[error("the decoder panicked")]
    Panicked,
}

impl ServiceError {
    /// A [`ServiceError::Decode`] of the object at `path`.
    pub(crate) fn decode(path: &str, source: impl Into<DecodeError>) -> ServiceError {
        ServiceError::Decode {
            path: path.to_owned(),
            source: source.into(),
        }
    }

    /// Whether retrying the same call may succeed (temporary backend errors only).
    pub fn is_temporary(&self) -> bool {
        matches!(self, ServiceError::Store(e) if e.is_temporary())
    }
}
