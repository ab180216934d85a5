//! The recording batcher: turns many live streams of short chunks into few large objects
//! without losing audio.
//!
//! [`Recorder::push`] acknowledges a chunk once it is safe: with a spool, once its record is
//! fsync'd to the local spool's shared log ([`crate::spool`], group commit: one fsync
//! acknowledges every append that arrived meanwhile, whatever the number of streams);
//! without one, once it is held in memory (Omi's behaviour, which a crash can lose). Chunks
//! are grouped per conversation into pending batches that are uploaded through
//! [`ChunkService::upload_batch`] when they reach their duration, chunk count or byte limit
//! ([`FlushReason::Full`]), when the user switches conversation, when they get too old (at
//! the next push, or [`Recorder::flush_due`]), and on [`Recorder::close`].
//!
//! Guarantees:
//!
//! - **Ack means durable.** An `Ok` from `push` means the chunk is in the spool (or, without a
//!   spool, in memory); an `Err` means it was not accepted and the caller still owns it.
//! - **Nothing is dropped by policy.** A batch leaves the spool only after the store confirmed
//!   its write. Temporary upload errors are retried with exponential backoff; a batch whose
//!   upload still fails is *held* and retried by later [`Recorder::flush_due`] /
//!   [`Recorder::close`] calls and by the next [`Recorder::open`]. A batch that failed
//!   permanently (a retry cannot help: a refused overwrite, a corrupt spool record) is held
//!   too, but retried only by [`Recorder::retry_held`] and the next [`Recorder::open`].
//! - **Exactly once.** Each chunk is in exactly one batch; a batch always becomes the same
//!   object (same name, create-only write; an identical object already there is a no-op), so a
//!   replay after a crash never duplicates audio. A push whose timestamp is not after the
//!   conversation's last held chunk is refused as [`RecorderError::Duplicate`]: after a crash a
//!   chunk may be durable without the caller having seen its ack, and the caller resumes after
//!   [`Recorder::resume_point`] instead of pushing it twice.
//! - **Bounded resources, set per stream.** [`StreamLimits`] caps the streams a node carries,
//!   the PCM bytes each stream keeps (pending, uploading and held batches: memory without a
//!   spool, disk with one; with a spool only uploading batches are in memory), and optionally
//!   the node's total. A push that does not fit first uploads batches to make room (the push
//!   waits), and fails with [`RecorderError::Backpressure`] if that cannot free room; a push
//!   that would open one stream too many fails with [`RecorderError::TooManyStreams`].
//! - **Streams do not wait on each other.** Each stream (user) has its own state; a push holds
//!   only its own stream's lock, also across its spool append, and never a lock that another
//!   stream's push or upload needs.
//! - **No poisoned batches.** A chunk the batch layout could never store (no whole sample;
//!   for packs, misaligned or too long) is refused at push as [`RecorderError::InvalidChunk`]
//!   instead of making its whole batch fail. Packs cannot hold overlapping chunks, so a chunk
//!   that starts before the previous chunk's audio ends (client clock jitter) closes the batch
//!   ([`FlushReason::Overlap`]) and starts the next one.
//!
//! Uploads triggered by a push run in the background (the push returns at the ack); uploads of
//! `flush_due`, `close` and budget flushes are awaited. Every public call runs to completion
//! even if the caller drops its future, so a cancelled call never loses track of a chunk.
//!
//! Each flush emits a `tracing` event (`batch flushed`: `reason`, `chunks`, `bytes`,
//! `audio_ms`, `attempts`, `objects_written`, `paths`) and is counted per reason in
//! [`RecorderStats::flushes`].
//!
//! The parts: `config.rs` (presets, limits, retries), `error.rs`, `stats.rs`, `machine.rs` (the
//! decisions, without I/O: admission, batch limits, overlap, age, retry) and `engine.rs`
//! (the I/O it decides: spool appends, uploads, retries).

mod config;
mod engine;
mod error;
mod machine;
mod stats;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::Bytes;
use chunk_format::Timestamp;
use chunk_store::{ConversationId, UserId};

use crate::level::ProtectionLevel;
use crate::service::ChunkService;
use engine::Inner;

pub use config::{RecorderConfig, RetryPolicy, StreamLimits};
pub use error::{BudgetScope, FlushError, RecorderError};
pub use stats::{
    Durability, FlushCounts, FlushReason, RecorderStats, RecoveredConversation, RecoveryReport,
    TEMP_SWEEP_AGE,
};

/// The recording batcher (see the module docs). Cheap to clone; clones share the batches.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// Runs a recorder call as its own task, so that it completes even if the caller's future is
/// dropped.
async fn detach<T: Send + 'static>(
    work: impl Future<Output = Result<T, RecorderError>> + Send + 'static,
) -> Result<T, RecorderError> {
    tokio::spawn(work)
        .await
        .unwrap_or_else(|join| Err(RecorderError::Task(join.to_string())))
}

impl Recorder {
    /// Opens a recorder. With a spool directory, first recovers and replays what the spool
    /// holds: each batch left by an earlier process is uploaded (create-only, so a batch that
    /// was already stored is a no-op) and retired; batches whose upload fails stay held.
    /// The report lists, per conversation, the last spooled chunk (see
    /// [`Recorder::resume_point`]).
    pub async fn open(
        service: ChunkService,
        config: RecorderConfig,
    ) -> Result<(Recorder, RecoveryReport), RecorderError> {
        let (inner, report) = detach(Inner::open(service, config)).await?;
        Ok((Recorder { inner }, report))
    }

    /// Accepts one chunk. Returns once it is durable (spool) or held (memory); an `Err` means
    /// the chunk was not accepted and the caller still owns it.
    ///
    /// Timestamps of one conversation must increase: a chunk at or before the conversation's
    /// last held chunk is [`RecorderError::Duplicate`]. A chunk for another conversation of the
    /// same user flushes the user's previous conversation. `level` is the user's protection
    /// level if the caller has it cached (else it is looked up once per batch at upload).
    pub async fn push(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        timestamp: Timestamp,
        pcm: impl Into<Bytes>,
        level: Option<ProtectionLevel>,
    ) -> Result<Durability, RecorderError> {
        let inner = self.inner.clone();
        let key = (uid.clone(), conversation.clone());
        let pcm = pcm.into();
        detach(async move { inner.push(key, timestamp, pcm, level).await }).await
    }

    /// Waits for the uploads in flight when it was called, retries held batches that are due
    /// (not those that failed permanently), and flushes batches older than `max_age`. Call it
    /// periodically (Omi's loop ticks every second).
    ///
    /// Returns [`RecorderError::Held`] while any batch is held after a failed upload.
    pub async fn flush_due(&self) -> Result<(), RecorderError> {
        let inner = self.inner.clone();
        detach(async move { inner.flush_due().await }).await
    }

    /// Retries every held batch now, those that failed permanently included (call it once
    /// the cause is fixed). Returns [`RecorderError::Held`] if any is still held.
    pub async fn retry_held(&self) -> Result<(), RecorderError> {
        let inner = self.inner.clone();
        detach(async move { inner.retry_held().await }).await
    }

    /// Stops accepting chunks, waits for uploads in flight, and flushes every pending batch
    /// and every held batch whose failure was temporary. Returns [`RecorderError::Held`] if a
    /// batch could not be uploaded: it stays held (call [`Recorder::retry_held`] or `close`
    /// again to retry) and, with a spool, in the spool for the next [`Recorder::open`].
    pub async fn close(&self) -> Result<(), RecorderError> {
        let inner = self.inner.clone();
        detach(async move { inner.close().await }).await
    }

    /// The start of the last chunk of this conversation that the recorder holds or the store
    /// has, found with one listing of the conversation; `None` if there is none. A caller
    /// resuming a stream (after a crash, or in another process) pushes only chunks after it:
    /// the recorder refuses earlier ones as [`RecorderError::Duplicate`] from then on.
    ///
    /// For a pack, whose name records the end of its audio, the mark is one millisecond
    /// before that end.
    pub async fn resume_point(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
    ) -> Result<Option<Timestamp>, RecorderError> {
        let inner = self.inner.clone();
        let key = (uid.clone(), conversation.clone());
        detach(async move { inner.resume_point(key).await }).await
    }

    /// The start of the last chunk of this conversation the recorder knows it holds (spooled,
    /// pending, uploaded by it, or found by [`Recorder::resume_point`]), without any I/O.
    pub async fn last_held(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
    ) -> Option<Timestamp> {
        self.inner
            .last_held(&(uid.clone(), conversation.clone()))
            .await
    }

    /// A snapshot of the recorder's counters and gauges.
    pub async fn stats(&self) -> RecorderStats {
        self.inner.stats()
    }

    /// The configuration.
    pub fn config(&self) -> &RecorderConfig {
        &self.inner.config
    }
}
