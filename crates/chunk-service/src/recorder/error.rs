//! The recorder's errors.

use std::sync::Arc;

use chunk_format::Timestamp;

use crate::error::ServiceError;
use crate::spool::SpoolError;

/// Why a batch could not be flushed.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// The upload failed (after retries, if the error was temporary).
    #[error(transparent)]
    Upload(#[from] ServiceError),
    /// The batch could not be read back from the spool.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The upload task panicked; the batch is held (and, with a spool, still on disk).
    #[error("the upload task panicked: {0}")]
    Panicked(String),
}

impl FlushError {
    /// Whether a later retry may succeed without anyone intervening.
    pub fn is_temporary(&self) -> bool {
        match self {
            FlushError::Upload(error) => error.is_temporary(),
            FlushError::Spool(_) | FlushError::Panicked(_) => false,
        }
    }
}

/// Errors of the recorder. A push that returns an error did **not** acknowledge its chunk.
#[derive(Debug, thiserror::Error)]
pub enum RecorderError {
    /// The spool failed.
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// A budget is full and flushing could not free room (uploads are failing): the stream's
    /// own ([`BudgetScope::Stream`]) or the node's total ([`BudgetScope::Total`]).
    #[error("recorder {scope} budget full: {used_bytes} bytes held, budget {budget_bytes}; the chunk was not accepted{}", last_error.as_ref().map(|e| format!(" (upload: {e})")).unwrap_or_default())]
    Backpressure {
        /// Which budget.
        scope: BudgetScope,
        /// PCM bytes held (pending, uploading and held batches) against that budget.
        used_bytes: usize,
        /// The budget.
        budget_bytes: usize,
        /// The upload failure that kept the push from freeing room, if one was tried.
        last_error: Option<Arc<FlushError>>,
    },
    /// The node carries as many streams as
    /// [`StreamLimits::max_streams`](super::StreamLimits::max_streams) allows; the chunk of a
    /// new stream was not accepted.
    #[error(
        "recorder carries its limit of {max_streams} streams; the chunk of user {uid} was not accepted"
    )]
    TooManyStreams {
        /// The user whose stream would have opened.
        uid: String,
        /// The limit.
        max_streams: usize,
    },
    /// The conversation already holds a chunk at or after this timestamp (spooled, pending,
    /// uploaded by this recorder, or found by [`Recorder::resume_point`](super::Recorder::resume_point)); the chunk was not
    /// stored again. A retransmitted chunk gets this, and so does an out-of-order one.
    #[error(
        "chunk at {timestamp} of conversation {conversation} (user {uid}) is not after the last held chunk ({last}); not stored again"
    )]
    Duplicate {
        /// The user.
        uid: String,
        /// The conversation.
        conversation: String,
        /// The refused chunk's start.
        timestamp: Timestamp,
        /// The start of the conversation's last held chunk.
        last: Timestamp,
    },
    /// The chunk cannot be stored: it holds no whole sample, or is larger than one object
    /// may hold. It was not accepted (accepting it would make its whole batch fail).
    #[error("chunk at {timestamp} of conversation {conversation} (user {uid}) refused: {reason}")]
    InvalidChunk {
        /// The user.
        uid: String,
        /// The conversation.
        conversation: String,
        /// The refused chunk's start.
        timestamp: Timestamp,
        /// What is wrong with it.
        reason: String,
    },
    /// Batches are held after failed uploads (in the spool, or in memory without one); they
    /// are retried by the next [`Recorder::flush_due`](super::Recorder::flush_due) or [`Recorder::close`](super::Recorder::close) (and, with a
    /// spool, by the next [`Recorder::open`](super::Recorder::open)).
    #[error("{batches} batch(es) ({bytes} bytes) held after failed uploads; last error: {error}")]
    Held {
        /// Batches held.
        batches: usize,
        /// Their PCM bytes.
        bytes: usize,
        /// The most recent failure.
        #[source]
        error: Arc<FlushError>,
    },
    /// Listing the conversation for [`Recorder::resume_point`](super::Recorder::resume_point) failed.
    #[error("listing the conversation to resume: {0}")]
    Listing(#[source] ServiceError),
    /// The recorder was closed.
    #[error("the recorder is closed")]
    Closed,
    /// A recorder task failed to run to completion (it panicked, or the runtime shut down).
    #[error("recorder task failed: {0}")]
    Task(String),
}

/// Which budget pushed back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetScope {
    /// The stream's own bytes ([`StreamLimits::stream_bytes`](super::StreamLimits::stream_bytes)).
    Stream,
    /// The node's total ([`StreamLimits::total`](super::StreamLimits::total)).
    Total,
}

impl std::fmt::Display for BudgetScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BudgetScope::Stream => "stream",
            BudgetScope::Total => "total",
        })
    }
}
