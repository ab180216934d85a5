//! The recording batcher: turns a live stream of short chunks into few large objects without
//! losing audio.
//!
//! [`Recorder::push`] acknowledges a chunk once it is safe: with a spool, once its record is
//! fsync'd to the local spool ([`crate::spool`]); without one, once it is held in memory (Omi's
//! behaviour, which a crash can lose). Chunks are grouped per conversation into pending batches
//! that are uploaded through [`ChunkService::upload_batch`] when they reach their duration,
//! chunk count or byte limit ([`FlushReason::Full`]), when the user switches conversation, when
//! they get too old (at the next push, or [`Recorder::flush_due`]), and on [`Recorder::close`].
//!
//! Guarantees:
//!
//! - **Ack means durable.** An `Ok` from `push` means the chunk is in the spool (or, without a
//!   spool, in memory); an `Err` means it was not accepted and the caller still owns it.
//! - **Nothing is dropped by policy.** A batch leaves the spool only after the store confirmed
//!   its write. Temporary upload errors are retried with exponential backoff; a batch whose
//!   upload still fails (or fails permanently) is *held* and retried by later
//!   [`Recorder::flush_due`] / [`Recorder::close`] calls and by the next [`Recorder::open`].
//! - **Exactly once.** Each chunk is in exactly one batch; a batch always becomes the same
//!   object (same name, create-only write; an identical object already there is a no-op), so a
//!   replay after a crash never duplicates audio. A push whose timestamp is not after the
//!   conversation's last held chunk is refused as [`RecorderError::Duplicate`]: after a crash a
//!   chunk may be durable without the caller having seen its ack, and the caller resumes after
//!   [`Recorder::resume_point`] instead of pushing it twice.
//! - **Bounded memory.** The PCM bytes of pending, uploading and held batches are capped by
//!   [`RecorderConfig::budget_bytes`] (memory without a spool, disk with one; with a spool only
//!   uploading batches are in memory). A push that does not fit first uploads the oldest held or
//!   pending batches (the push waits), and fails with [`RecorderError::Backpressure`] if that
//!   cannot free room.
//!
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

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chunk_format::{ObjectKind, Timestamp};
use chunk_store::{ConversationId, UserId};
use tokio::sync::{Mutex, Notify, Semaphore};
use tokio::time::Instant;

use crate::config::BatchLayout;
use crate::error::ServiceError;
use crate::level::ProtectionLevel;
use crate::service::ChunkService;
use crate::spool::{SegmentHeader, Spool, SpoolError};
use crate::write::upload::{Chunk, UploadOptions, UploadReport};

/// Upload attempts a push makes to free budget before it fails with backpressure.
const BUDGET_ROUNDS: usize = 8;
/// Conversations whose last timestamp the recorder remembers when they have nothing pending
/// or held (older marks are forgotten past this; [`Recorder::resume_point`] restores one).
const HIGH_WATER_CAP: usize = 65_536;

/// How upload failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per flush (at least 1); only temporary errors are retried.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled each time.
    pub initial_backoff: Duration,
    /// Largest delay between attempts.
    pub max_backoff: Duration,
    /// Largest delay before [`Recorder::flush_due`] retries a held batch again (the delay
    /// starts at `max_backoff` and doubles per failed flush).
    pub held_retry_max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
            held_retry_max: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// Delay before a held batch that failed `failures` flushes is retried by `flush_due`.
    fn held_delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        self.max_backoff
            .saturating_mul(1 << doublings)
            .min(self.held_retry_max)
    }
}

/// Recorder configuration. Start from a preset: [`RecorderConfig::omi`] or
/// [`RecorderConfig::spool`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecorderConfig {
    /// Flush a batch once it holds this much audio.
    pub max_batch_duration: Duration,
    /// Flush a batch once it holds this many chunks.
    pub max_batch_chunks: usize,
    /// Flush a batch once it holds this many PCM bytes.
    pub max_batch_bytes: usize,
    /// Flush a batch whose first chunk arrived this long ago (checked at each push of its
    /// conversation and by [`Recorder::flush_due`]).
    pub max_age: Duration,
    /// Sample rate of the PCM16 mono chunks, for durations.
    pub sample_rate: u32,
    /// PCM bytes of pending, uploading and held batches the recorder may keep (memory without
    /// a spool, disk with one) before pushes wait and then fail.
    pub budget_bytes: usize,
    /// Retries of a failed upload.
    pub retry: RetryPolicy,
    /// Batch uploads running at once (at least 1). With a spool, a batch is read back into
    /// memory only when its upload starts, so this also bounds the spool mode's memory to
    /// about `max_concurrent_uploads × max_batch_bytes`.
    pub max_concurrent_uploads: usize,
    /// Directory of the durable spool; `None` holds batches in memory only.
    pub spool_dir: Option<PathBuf>,
}

impl RecorderConfig {
    /// Omi's pusher numbers: 60 s batches, flushed at 60 s of age, a 20 MiB memory budget, no
    /// spool (a crash loses what is buffered).
    pub fn omi() -> RecorderConfig {
        RecorderConfig {
            max_batch_duration: Duration::from_secs(60),
            max_batch_chunks: 1_000,
            max_batch_bytes: 64 * 1024 * 1024,
            max_age: Duration::from_secs(60),
            sample_rate: 16_000,
            budget_bytes: 20 * 1024 * 1024,
            retry: RetryPolicy::default(),
            max_concurrent_uploads: 4,
            spool_dir: None,
        }
    }

    /// The spool preset: 10-minute batches (at most 6 writes per recorded hour) made safe by a
    /// durable local spool in `dir`, with a 1 GiB spool budget. The age limit is 11 minutes, so
    /// a live stream's batches fill up by duration before they age out (a stalled stream is
    /// still flushed).
    pub fn spool(dir: impl Into<PathBuf>) -> RecorderConfig {
        RecorderConfig {
            max_batch_duration: Duration::from_secs(600),
            max_age: Duration::from_secs(660),
            budget_bytes: 1024 * 1024 * 1024,
            spool_dir: Some(dir.into()),
            ..RecorderConfig::omi()
        }
    }
}

/// Why a batch was flushed (exported in tracing events and [`RecorderStats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlushReason {
    /// The batch reached its duration, chunk count or byte limit.
    Full,
    /// The batch's first chunk is older than `max_age`.
    Age,
    /// The user pushed a chunk for another conversation.
    ConversationSwitch,
    /// The budget was full and a push needed room.
    Budget,
    /// The pushed chunk starts before the end of the batch's previous chunk; a pack cannot
    /// hold overlapping chunks, so the batch is closed and the chunk starts the next one
    /// (downloads trim the overlap between the two objects).
    Overlap,
    /// [`Recorder::close`].
    Close,
    /// Replay of a batch found in the spool at start.
    Replay,
    /// A retry of a batch whose earlier upload failed.
    Retry,
}

impl FlushReason {
    /// The reason's name as tracing and metrics report it (`full`, `age`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            FlushReason::Full => "full",
            FlushReason::Age => "age",
            FlushReason::ConversationSwitch => "conversation-switch",
            FlushReason::Budget => "budget",
            FlushReason::Overlap => "overlap",
            FlushReason::Close => "close",
            FlushReason::Replay => "replay",
            FlushReason::Retry => "retry",
        }
    }
}

impl std::fmt::Display for FlushReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    /// The budget is full and flushing could not free room (uploads are failing).
    #[error("recorder budget full: {used_bytes} bytes held, budget {budget_bytes}; the chunk was not accepted{}", last_error.as_ref().map(|e| format!(" (upload: {e})")).unwrap_or_default())]
    Backpressure {
        /// PCM bytes held (pending, uploading and held batches).
        used_bytes: usize,
        /// The budget.
        budget_bytes: usize,
        /// The upload failure that kept the push from freeing room, if one was tried.
        last_error: Option<Arc<FlushError>>,
    },
    /// The conversation already holds a chunk at or after this timestamp (spooled, pending,
    /// uploaded by this recorder, or found by [`Recorder::resume_point`]); the chunk was not
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
    /// are retried by the next [`Recorder::flush_due`] or [`Recorder::close`] (and, with a
    /// spool, by the next [`Recorder::open`]).
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
    /// Listing the conversation for [`Recorder::resume_point`] failed.
    #[error("listing the conversation to resume: {0}")]
    Listing(#[source] ServiceError),
    /// The recorder was closed.
    #[error("the recorder is closed")]
    Closed,
    /// A recorder task failed to run to completion (it panicked, or the runtime shut down).
    #[error("recorder task failed: {0}")]
    Task(String),
}

/// What a successful push means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync'd to the local spool: survives a crash.
    Spooled,
    /// Held in process memory only: a crash loses it.
    Memory,
}

/// Flushes of one reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct FlushCounts {
    /// Batches flushed.
    pub batches: u64,
    /// Chunks in them.
    pub chunks: u64,
    /// PCM bytes in them.
    pub bytes: u64,
}

/// Counters and gauges of the recorder's work.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RecorderStats {
    /// Chunks acknowledged.
    pub chunks_acked: u64,
    /// Pushes refused as [`RecorderError::Duplicate`].
    pub duplicates: u64,
    /// Pushes refused as [`RecorderError::Backpressure`].
    pub backpressure: u64,
    /// Batches uploaded, by reason.
    pub flushes: BTreeMap<FlushReason, FlushCounts>,
    /// Upload attempts that failed.
    pub failed_attempts: u64,
    /// fsyncs of the spool that acknowledged chunks (0 without a spool).
    pub spool_syncs: u64,
    /// Batches accepting chunks.
    pub pending_batches: usize,
    /// Their PCM bytes.
    pub pending_bytes: usize,
    /// Batches being uploaded.
    pub in_flight_batches: usize,
    /// Their PCM bytes.
    pub in_flight_bytes: usize,
    /// Batches held after failed uploads.
    pub held_batches: usize,
    /// Their PCM bytes.
    pub held_bytes: usize,
}

/// A conversation found in the spool by [`Recorder::open`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredConversation {
    /// The user.
    pub uid: UserId,
    /// The conversation.
    pub conversation: ConversationId,
    /// Chunks the spool held for it.
    pub chunks: usize,
    /// The start of its last spooled chunk: a caller resuming this conversation pushes only
    /// chunks after it (this chunk may never have been acknowledged to the caller).
    pub last: Timestamp,
}

/// What [`Recorder::open`] found and replayed.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Segments found in the spool.
    pub segments: usize,
    /// Chunks they held.
    pub chunks: usize,
    /// PCM bytes they held.
    pub pcm_bytes: u64,
    /// Torn tail bytes cut.
    pub cut_bytes: u64,
    /// Segments uploaded (or found already stored) and removed during recovery.
    pub uploaded: usize,
    /// Segments whose upload failed; they are held for retry.
    pub held: usize,
    /// The last failure of a held segment.
    pub error: Option<Arc<FlushError>>,
    /// Per conversation, what the spool held.
    pub conversations: Vec<RecoveredConversation>,
    /// Temporary files of killed writers removed from an fs store (older than
    /// [`TEMP_SWEEP_AGE`]; see [`chunk_store::Store::sweep_fs_temp`]).
    pub temp_files_removed: usize,
}

/// Age above which [`Recorder::open`] removes an fs store's temporary files: far above the
/// longest write of one batch, so a write still going on in another process is never touched.
pub const TEMP_SWEEP_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

type Key = (UserId, ConversationId);

#[derive(Debug, Clone)]
struct Batch {
    key: Key,
    level: Option<ProtectionLevel>,
    /// Chunks held in memory (no spool).
    chunks: Vec<Chunk>,
    /// Spool segment holding the chunks (spool mode).
    segment: Option<u64>,
    count: usize,
    bytes: usize,
    samples: u64,
    first: Option<Timestamp>,
    last: Option<Timestamp>,
    /// End of the last chunk's audio in milliseconds (its start plus its duration).
    end_ms: u64,
    opened: Instant,
    /// Failed flushes so far.
    failures: u32,
    /// When `flush_due` may retry it (held batches).
    retry_at: Instant,
    /// Its last failure (held batches).
    error: Option<Arc<FlushError>>,
}

impl Batch {
    fn new(key: Key, level: Option<ProtectionLevel>, segment: Option<u64>) -> Batch {
        let now = Instant::now();
        Batch {
            key,
            level,
            chunks: Vec::new(),
            segment,
            count: 0,
            bytes: 0,
            samples: 0,
            first: None,
            last: None,
            end_ms: 0,
            opened: now,
            failures: 0,
            retry_at: now,
            error: None,
        }
    }
}

#[derive(Debug, Default)]
struct State {
    pending: Vec<Batch>,
    held: Vec<Batch>,
    in_flight: usize,
    in_flight_bytes: usize,
    /// Per conversation, the start of the last chunk held (spooled, pending, uploaded by this
    /// recorder or found by `resume_point`).
    high_water: HashMap<Key, Timestamp>,
    current: HashMap<UserId, ConversationId>,
    stats: RecorderStats,
    closed: bool,
}

impl State {
    fn used_bytes(&self) -> usize {
        let resting: usize = self.pending.iter().chain(&self.held).map(|b| b.bytes).sum();
        resting + self.in_flight_bytes
    }

    fn check_open(&self) -> Result<(), RecorderError> {
        if self.closed {
            Err(RecorderError::Closed)
        } else {
            Ok(())
        }
    }

    fn check_new(&mut self, key: &Key, timestamp: Timestamp) -> Result<(), RecorderError> {
        match self.high_water.get(key) {
            Some(&last) if timestamp <= last => {
                self.stats.duplicates += 1;
                Err(RecorderError::Duplicate {
                    uid: key.0.to_string(),
                    conversation: key.1.to_string(),
                    timestamp,
                    last,
                })
            }
            _ => Ok(()),
        }
    }

    fn raise_high_water(&mut self, key: &Key, timestamp: Timestamp) {
        let mark = self.high_water.entry(key.clone()).or_insert(timestamp);
        *mark = (*mark).max(timestamp);
        if self.high_water.len() > HIGH_WATER_CAP {
            let live: Vec<Key> = self
                .pending
                .iter()
                .chain(&self.held)
                .map(|b| b.key.clone())
                .chain(self.current.iter().map(|(u, c)| (u.clone(), c.clone())))
                .collect();
            self.high_water.retain(|k, _| live.contains(k));
        }
    }

    /// Takes a batch out of `pending` or `held` for an upload and counts it in flight.
    fn start_upload(&mut self, batch: Batch) -> Batch {
        self.in_flight += 1;
        self.in_flight_bytes += batch.bytes;
        batch
    }

    fn take_pending(&mut self, key: &Key) -> Option<Batch> {
        let index = self.pending.iter().position(|b| &b.key == key)?;
        let batch = self.pending.swap_remove(index);
        Some(self.start_upload(batch))
    }

    /// `Err(Held)` if any batch is held.
    fn held_result(&self) -> Result<(), RecorderError> {
        let Some(latest) = self.held.iter().rev().find_map(|b| b.error.clone()) else {
            return Ok(());
        };
        Err(RecorderError::Held {
            batches: self.held.len(),
            bytes: self.held.iter().map(|b| b.bytes).sum(),
            error: latest,
        })
    }
}

struct Inner {
    service: ChunkService,
    config: RecorderConfig,
    spool: Option<Arc<std::sync::Mutex<Spool>>>,
    state: Mutex<State>,
    /// Notified when the last in-flight upload finishes.
    idle: Notify,
    /// Permits of `max_concurrent_uploads`.
    uploads: Semaphore,
}

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
    /// holds: each segment left by an earlier process is uploaded (create-only, so a batch
    /// that was already stored is a no-op) and removed; segments whose upload fails stay held.
    /// The report lists, per conversation, the last spooled chunk (see
    /// [`Recorder::resume_point`]).
    pub async fn open(
        service: ChunkService,
        config: RecorderConfig,
    ) -> Result<(Recorder, RecoveryReport), RecorderError> {
        detach(Inner::open(service, config)).await
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

    /// Waits for uploads in flight, retries held batches that are due, and flushes batches
    /// older than `max_age`. Call it periodically (Omi's loop ticks every second).
    ///
    /// Returns [`RecorderError::Held`] while any batch is held after a failed upload.
    pub async fn flush_due(&self) -> Result<(), RecorderError> {
        let inner = self.inner.clone();
        detach(async move { inner.flush_due().await }).await
    }

    /// Stops accepting chunks, waits for uploads in flight, and flushes every pending and held
    /// batch. Returns [`RecorderError::Held`] if a batch could not be uploaded: it stays held
    /// (call `close` again to retry) and, with a spool, in the spool for the next
    /// [`Recorder::open`].
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
        let key = (uid.clone(), conversation.clone());
        self.inner.state.lock().await.high_water.get(&key).copied()
    }

    /// A snapshot of the recorder's counters and gauges.
    pub async fn stats(&self) -> RecorderStats {
        let state = self.inner.state.lock().await;
        let mut stats = state.stats.clone();
        stats.pending_batches = state.pending.len();
        stats.pending_bytes = state.pending.iter().map(|b| b.bytes).sum();
        stats.in_flight_batches = state.in_flight;
        stats.in_flight_bytes = state.in_flight_bytes;
        stats.held_batches = state.held.len();
        stats.held_bytes = state.held.iter().map(|b| b.bytes).sum();
        stats
    }

    /// The configuration.
    pub fn config(&self) -> &RecorderConfig {
        &self.inner.config
    }
}

impl Inner {
    async fn open(
        service: ChunkService,
        config: RecorderConfig,
    ) -> Result<(Recorder, RecoveryReport), RecorderError> {
        let mut report = RecoveryReport::default();
        let mut recovered = Vec::new();
        let spool = match &config.spool_dir {
            None => None,
            Some(dir) => {
                let dir = dir.clone();
                let (spool, found) = blocking(move || Spool::open(dir)).await?;
                report.segments = found.len();
                for info in found {
                    report.chunks += info.chunks;
                    report.pcm_bytes += info.pcm_bytes;
                    report.cut_bytes += info.cut_bytes;
                    let key = (info.header.uid, info.header.conversation);
                    match report
                        .conversations
                        .iter_mut()
                        .find(|c| c.uid == key.0 && c.conversation == key.1)
                    {
                        Some(seen) => {
                            seen.chunks += info.chunks;
                            seen.last = seen.last.max(info.last);
                        }
                        None => report.conversations.push(RecoveredConversation {
                            uid: key.0.clone(),
                            conversation: key.1.clone(),
                            chunks: info.chunks,
                            last: info.last,
                        }),
                    }
                    let mut batch = Batch::new(key, info.header.level, Some(info.id));
                    batch.count = info.chunks;
                    batch.bytes = usize::try_from(info.pcm_bytes).unwrap_or(usize::MAX);
                    batch.samples = info.pcm_bytes / 2;
                    batch.first = Some(info.first);
                    batch.last = Some(info.last);
                    recovered.push(batch);
                }
                Some(Arc::new(std::sync::Mutex::new(spool)))
            }
        };
        let permits = config.max_concurrent_uploads.max(1);
        let inner = Arc::new(Inner {
            service,
            config,
            spool,
            state: Mutex::new(State::default()),
            idle: Notify::new(),
            uploads: Semaphore::new(permits),
        });
        let batches = {
            let mut state = inner.state.lock().await;
            for conversation in &report.conversations {
                let key = (conversation.uid.clone(), conversation.conversation.clone());
                state.raise_high_water(&key, conversation.last);
            }
            recovered
                .into_iter()
                .map(|b| state.start_upload(b))
                .collect::<Vec<_>>()
        };
        for batch in batches {
            match inner.upload(batch, FlushReason::Replay).await {
                Ok(()) => report.uploaded += 1,
                Err(error) => {
                    report.held += 1;
                    report.error = Some(error);
                }
            }
        }
        // A killed writer (of this process's predecessor) leaves a temp file; it is not audio
        // anyone can read, the spool still holds what it was writing. Best effort.
        match inner.service.store().sweep_fs_temp(TEMP_SWEEP_AGE).await {
            Ok(swept) => report.temp_files_removed = swept.removed,
            Err(error) => tracing::warn!(%error, "could not sweep the store's temporary files"),
        }
        if report.segments > 0 {
            tracing::info!(
                segments = report.segments,
                chunks = report.chunks,
                cut_bytes = report.cut_bytes,
                uploaded = report.uploaded,
                held = report.held,
                "spool replayed"
            );
        }
        Ok((Recorder { inner }, report))
    }

    async fn push(
        self: Arc<Self>,
        key: Key,
        timestamp: Timestamp,
        pcm: Bytes,
        level: Option<ProtectionLevel>,
    ) -> Result<Durability, RecorderError> {
        let budget = self.config.budget_bytes;
        self.check_chunk(&key, timestamp, &pcm)?;
        // A chunk for another conversation of the same user flushes the previous one.
        let switched = {
            let mut state = self.state.lock().await;
            state.check_open()?;
            state.check_new(&key, timestamp)?;
            match state.current.insert(key.0.clone(), key.1.clone()) {
                Some(previous) if previous != key.1 => {
                    state.take_pending(&(key.0.clone(), previous))
                }
                _ => None,
            }
        };
        if let Some(batch) = switched {
            self.spawn_upload(batch, FlushReason::ConversationSwitch);
        }

        let mut rounds = 0;
        let mut last_error = None;
        loop {
            let mut state = self.state.lock().await;
            state.check_open()?;
            state.check_new(&key, timestamp)?;
            let used = state.used_bytes();
            if used.saturating_add(pcm.len()) <= budget {
                let (durability, flushes) =
                    self.append(&mut state, &key, timestamp, pcm, level).await?;
                drop(state);
                for (batch, reason) in flushes {
                    self.spawn_upload(batch, reason);
                }
                return Ok(durability);
            }
            // Over budget: upload the oldest held or pending batch, waiting for it.
            let backpressure = |state: &mut State, last_error| {
                state.stats.backpressure += 1;
                RecorderError::Backpressure {
                    used_bytes: state.used_bytes(),
                    budget_bytes: budget,
                    last_error,
                }
            };
            if rounds >= BUDGET_ROUNDS || last_error.is_some() {
                return Err(backpressure(&mut state, last_error));
            }
            rounds += 1;
            let oldest = |batches: &[Batch]| {
                batches
                    .iter()
                    .enumerate()
                    .min_by_key(|(_, b)| b.opened)
                    .map(|(i, _)| i)
            };
            let victim = if let Some(i) = oldest(&state.held) {
                Some(state.held.swap_remove(i))
            } else {
                oldest(&state.pending).map(|i| state.pending.swap_remove(i))
            };
            match victim {
                Some(batch) => {
                    let batch = state.start_upload(batch);
                    drop(state);
                    if let Err(error) = self.upload(batch, FlushReason::Budget).await {
                        last_error = Some(error);
                    }
                }
                None if state.in_flight > 0 => {
                    let idle = self.idle.notified();
                    drop(state);
                    idle.await;
                }
                None => return Err(backpressure(&mut state, None)),
            }
        }
    }

    /// Refuses a chunk that would make its batch's upload fail for good: one without a whole
    /// sample frame, or (packs) one larger than a pack frame may be.
    fn check_chunk(
        &self,
        key: &Key,
        timestamp: Timestamp,
        pcm: &[u8],
    ) -> Result<(), RecorderError> {
        let usable = pcm.len() - pcm.len() % 2;
        let service = self.service.config();
        let reason = if usable == 0 {
            Some("it holds no whole PCM16 sample".to_owned())
        } else if service.batch_layout == BatchLayout::Pack {
            let block = 2 * usize::from(service.pack.channels.max(1));
            let max = chunk_format::pack::MAX_CHUNK_BYTES as usize;
            if !usable.is_multiple_of(block) {
                Some(format!(
                    "{usable} bytes are not whole frames of {} channels",
                    service.pack.channels
                ))
            } else if usable > max {
                Some(format!(
                    "{usable} bytes exceed a pack chunk's limit of {max}"
                ))
            } else {
                None
            }
        } else {
            None
        };
        match reason {
            None => Ok(()),
            Some(reason) => Err(RecorderError::InvalidChunk {
                uid: key.0.to_string(),
                conversation: key.1.to_string(),
                timestamp,
                reason,
            }),
        }
    }

    /// Milliseconds of audio in `bytes` of PCM, as the batch layout counts them (a pack rounds
    /// each chunk's duration up to the next millisecond).
    fn duration_ms(&self, bytes: usize) -> u64 {
        let service = self.service.config();
        let (rate, block) = match service.batch_layout {
            BatchLayout::Pack => (
                service.pack.sample_rate,
                2 * u64::from(service.pack.channels.max(1)),
            ),
            _ => (self.config.sample_rate, 2),
        };
        let samples = bytes as u64 / block;
        (samples * 1000).div_ceil(u64::from(rate.max(1)))
    }

    /// Adds the chunk to its conversation's pending batch (spooling it first); returns the
    /// batches to flush: a pack batch the chunk would overlap, and the chunk's own batch if it
    /// is now full or old.
    async fn append(
        &self,
        state: &mut State,
        key: &Key,
        timestamp: Timestamp,
        pcm: Bytes,
        level: Option<ProtectionLevel>,
    ) -> Result<(Durability, Vec<(Batch, FlushReason)>), RecorderError> {
        let mut flushes = Vec::new();
        let packs = self.service.config().batch_layout == BatchLayout::Pack;
        if packs
            && let Some(index) = state.pending.iter().position(|b| &b.key == key)
            && state.pending[index].count > 0
            && timestamp.as_millis() < state.pending[index].end_ms
        {
            let batch = state.pending.swap_remove(index);
            tracing::debug!(
                uid = %key.0,
                conversation = %key.1,
                %timestamp,
                previous_end_ms = batch.end_ms,
                "chunk overlaps the batch's last chunk; closing the batch"
            );
            flushes.push((state.start_upload(batch), FlushReason::Overlap));
        }
        let index = match state.pending.iter().position(|b| &b.key == key) {
            Some(index) => index,
            None => {
                let segment = match &self.spool {
                    None => None,
                    Some(spool) => {
                        let header = SegmentHeader {
                            uid: key.0.clone(),
                            conversation: key.1.clone(),
                            level,
                        };
                        let spool = spool.clone();
                        Some(blocking(move || lock(&spool).begin_segment(&header)).await?)
                    }
                };
                tracing::debug!(uid = %key.0, conversation = %key.1, ?segment, "batch opened");
                state.pending.push(Batch::new(key.clone(), level, segment));
                state.pending.len() - 1
            }
        };
        let len = pcm.len();
        let end_ms = timestamp.as_millis() + self.duration_ms(len);
        let batch = &mut state.pending[index];
        let durability = match (&self.spool, batch.segment) {
            (Some(spool), Some(segment)) => {
                let spool = spool.clone();
                blocking(move || lock(&spool).append(segment, timestamp, &pcm)).await?;
                state.stats.spool_syncs += 1;
                Durability::Spooled
            }
            _ => {
                batch.chunks.push(Chunk::new(timestamp, pcm));
                Durability::Memory
            }
        };
        batch.count += 1;
        batch.bytes += len;
        batch.samples += (len / 2) as u64;
        batch.first.get_or_insert(timestamp);
        batch.last = Some(timestamp);
        batch.end_ms = end_ms;
        let reason = if self.is_full(batch) {
            Some(FlushReason::Full)
        } else if batch.opened.elapsed() >= self.config.max_age {
            Some(FlushReason::Age)
        } else {
            None
        };
        state.stats.chunks_acked += 1;
        state.raise_high_water(key, timestamp);
        if let Some(reason) = reason {
            let batch = state.pending.swap_remove(index);
            flushes.push((state.start_upload(batch), reason));
        }
        Ok((durability, flushes))
    }

    fn is_full(&self, batch: &Batch) -> bool {
        let audio_ms = batch.samples * 1000 / u64::from(self.config.sample_rate.max(1));
        let limit_ms =
            u64::try_from(self.config.max_batch_duration.as_millis()).unwrap_or(u64::MAX);
        let max_chunks = match self.service.config().batch_layout {
            BatchLayout::Pack => self
                .config
                .max_batch_chunks
                .min(chunk_format::pack::MAX_CHUNKS as usize),
            _ => self.config.max_batch_chunks,
        };
        audio_ms >= limit_ms
            || batch.count >= max_chunks
            || batch.bytes >= self.config.max_batch_bytes
    }

    async fn flush_due(self: Arc<Self>) -> Result<(), RecorderError> {
        self.wait_idle().await;
        let now = Instant::now();
        let max_age = self.config.max_age;
        let batches = {
            let mut state = self.state.lock().await;
            let (due, wait): (Vec<Batch>, Vec<Batch>) = std::mem::take(&mut state.held)
                .into_iter()
                .partition(|b| b.retry_at <= now);
            state.held = wait;
            let (old, young): (Vec<Batch>, Vec<Batch>) = std::mem::take(&mut state.pending)
                .into_iter()
                .partition(|b| now.duration_since(b.opened) >= max_age);
            state.pending = young;
            let mut batches = Vec::new();
            for batch in due {
                batches.push((state.start_upload(batch), FlushReason::Retry));
            }
            for batch in old {
                batches.push((state.start_upload(batch), FlushReason::Age));
            }
            batches
        };
        for (batch, reason) in batches {
            // A failure is held; the result below reports it.
            let _ = self.upload(batch, reason).await;
        }
        self.state.lock().await.held_result()
    }

    async fn close(self: Arc<Self>) -> Result<(), RecorderError> {
        self.state.lock().await.closed = true;
        self.wait_idle().await;
        let batches = {
            let mut state = self.state.lock().await;
            let mut batches = Vec::new();
            for batch in std::mem::take(&mut state.held) {
                batches.push((state.start_upload(batch), FlushReason::Retry));
            }
            for batch in std::mem::take(&mut state.pending) {
                batches.push((state.start_upload(batch), FlushReason::Close));
            }
            batches
        };
        for (batch, reason) in batches {
            let _ = self.upload(batch, reason).await;
        }
        self.wait_idle().await;
        self.state.lock().await.held_result()
    }

    async fn resume_point(self: Arc<Self>, key: Key) -> Result<Option<Timestamp>, RecorderError> {
        let listing = self
            .service
            .list(&key.0, &key.1)
            .await
            .map_err(RecorderError::Listing)?;
        let stored = listing
            .chunks
            .iter()
            .map(|entry| match entry.kind {
                // A pack's name records the end of its audio, exclusive.
                ObjectKind::Pack => Timestamp::from_millis(entry.end.as_millis().saturating_sub(1))
                    .unwrap_or(entry.end),
                _ => entry.end,
            })
            .max();
        let mut state = self.state.lock().await;
        if let Some(stored) = stored {
            state.raise_high_water(&key, stored);
        }
        Ok(state.high_water.get(&key).copied())
    }

    async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.state.lock().await.in_flight == 0 {
                return;
            }
            idle.await;
        }
    }

    /// Uploads a batch in the background (it was counted in flight by `start_upload`).
    fn spawn_upload(self: &Arc<Self>, batch: Batch, reason: FlushReason) {
        let inner = self.clone();
        tokio::spawn(async move {
            // A failure is held and reported by flush_due / close.
            let _ = inner.upload(batch, reason).await;
        });
    }

    /// Uploads one batch (counted in flight by `start_upload`) with retries. On success removes
    /// it from the spool; on failure holds it. Either way it is no longer in flight afterwards.
    async fn upload(&self, mut batch: Batch, reason: FlushReason) -> Result<(), Arc<FlushError>> {
        // A panic in the upload (a dependency's bug) must neither drop the batch nor leave it
        // counted in flight forever (close would wait for it): it is held like a failure.
        // Cloning is cheap: in-memory chunks are `Bytes`, spooled ones are on disk.
        let keep = batch.clone();
        let attempt = std::panic::AssertUnwindSafe(self.try_upload(&mut batch, reason));
        let outcome = match futures::FutureExt::catch_unwind(attempt).await {
            Ok(outcome) => outcome,
            Err(panic) => {
                batch = keep;
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                Err(FlushError::Panicked(message))
            }
        };
        if outcome.is_ok() {
            self.remove_segment(&batch).await;
        }
        let mut state = self.state.lock().await;
        state.in_flight = state.in_flight.saturating_sub(1);
        state.in_flight_bytes = state.in_flight_bytes.saturating_sub(batch.bytes);
        let result = match outcome {
            Ok(()) => {
                let counts = state.stats.flushes.entry(reason).or_default();
                counts.batches += 1;
                counts.chunks += batch.count as u64;
                counts.bytes += batch.bytes as u64;
                Ok(())
            }
            Err(error) => {
                let error = Arc::new(error);
                batch.failures += 1;
                batch.retry_at = Instant::now() + self.config.retry.held_delay(batch.failures);
                batch.error = Some(error.clone());
                tracing::warn!(
                    uid = %batch.key.0,
                    conversation = %batch.key.1,
                    reason = reason.as_str(),
                    chunks = batch.count,
                    bytes = batch.bytes,
                    failures = batch.failures,
                    temporary = error.is_temporary(),
                    %error,
                    "batch upload failed; batch held for retry"
                );
                state.held.push(batch);
                Err(error)
            }
        };
        if state.in_flight == 0 {
            self.idle.notify_waiters();
        }
        result
    }

    async fn try_upload(&self, batch: &mut Batch, reason: FlushReason) -> Result<(), FlushError> {
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self.uploads.acquire().await.ok();
        let chunks = self.batch_chunks(batch).await?;
        if chunks.is_empty() {
            return Ok(());
        }
        let (uid, conversation) = &batch.key;
        let retry = self.config.retry;
        let mut backoff = retry.initial_backoff;
        let mut attempt = 0;
        let report: UploadReport = loop {
            attempt += 1;
            match self
                .service
                .upload_batch(
                    uid,
                    conversation,
                    chunks.clone(),
                    UploadOptions::with_level(batch.level),
                )
                .await
            {
                Ok(report) => break report,
                Err(error) => {
                    self.state.lock().await.stats.failed_attempts += 1;
                    let temporary = error.is_temporary();
                    tracing::debug!(%uid, %conversation, attempt, temporary, %error, "batch upload attempt failed");
                    if !temporary || attempt >= retry.max_attempts.max(1) {
                        return Err(FlushError::Upload(error));
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(retry.max_backoff);
                }
            }
        };
        let audio_ms = batch.samples * 1000 / u64::from(self.config.sample_rate.max(1));
        tracing::info!(
            %uid,
            %conversation,
            reason = reason.as_str(),
            chunks = chunks.len(),
            bytes = batch.bytes,
            audio_ms,
            attempts = attempt,
            objects_written = report.objects_written,
            paths = ?report.paths,
            "batch flushed"
        );
        Ok(())
    }

    async fn batch_chunks(&self, batch: &Batch) -> Result<Vec<Chunk>, FlushError> {
        match (&self.spool, batch.segment) {
            (Some(spool), Some(segment)) => {
                let spool = spool.clone();
                let chunks = blocking(move || {
                    let mut spool = lock(&spool);
                    spool.seal(segment);
                    spool.read_segment(segment)
                })
                .await?;
                Ok(chunks
                    .into_iter()
                    .map(|c| Chunk::new(c.timestamp, c.pcm))
                    .collect())
            }
            _ => Ok(batch.chunks.clone()),
        }
    }

    async fn remove_segment(&self, batch: &Batch) {
        if let (Some(spool), Some(segment)) = (&self.spool, batch.segment) {
            let spool = spool.clone();
            if let Err(error) = blocking(move || lock(&spool).remove(segment)).await {
                // The batch is stored; a leftover segment is replayed as an identical no-op.
                tracing::warn!(%error, segment, "could not remove a flushed spool segment");
            }
        }
    }
}

fn lock(spool: &std::sync::Mutex<Spool>) -> std::sync::MutexGuard<'_, Spool> {
    spool
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs blocking spool I/O off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(join) => Err(SpoolError::Io {
            path: PathBuf::new(),
            op: "spool worker",
            source: std::io::Error::other(join.to_string()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EncryptionPolicy, ServiceConfig};
    use crate::level::InMemoryLevels;
    use chunk_store::layers::{
        FaultKind, FaultLayer, FaultOp, FaultPlan, FaultRule, FaultSchedule,
    };
    use chunk_store::{RetryOptions, Store};

    /// 0.5 s of 16 kHz PCM16 per chunk.
    const CHUNK_MS: u64 = 500;
    const CHUNK_BYTES: usize = 16_000;
    const T0: u64 = 1_786_961_845_727;

    fn ts(i: u64) -> Timestamp {
        Timestamp::from_millis(T0 + i * CHUNK_MS).unwrap()
    }

    fn pcm(i: u64) -> Bytes {
        Bytes::from(
            (0..CHUNK_BYTES)
                .map(|j| (i as usize * 31 + j * 7) as u8)
                .collect::<Vec<u8>>(),
        )
    }

    fn ids(conv: &str) -> (UserId, ConversationId) {
        (
            UserId::new("user-1").unwrap(),
            ConversationId::new(conv).unwrap(),
        )
    }

    fn store(plan: Option<FaultPlan>) -> (Store, Option<FaultLayer>) {
        let mut builder = Store::builder_from_uri("memory://").unwrap();
        builder.options_mut().retry = RetryOptions::none();
        let fault = plan.map(FaultLayer::new);
        if let Some(fault) = &fault {
            builder = builder.fault_layer(fault.clone());
        }
        (builder.build(), fault)
    }

    /// A service writing Omi batches (raw PCM concatenated, so tests compare object bytes).
    fn service(store: Store) -> ChunkService {
        service_with(store, BatchLayout::Omi)
    }

    fn service_with(store: Store, layout: BatchLayout) -> ChunkService {
        let config = ServiceConfig {
            batch_layout: layout,
            encryption: EncryptionPolicy::Disabled,
            ..ServiceConfig::default()
        };
        let levels = Arc::new(InMemoryLevels::new(ProtectionLevel::Standard));
        ChunkService::new(store, None, levels, config).unwrap()
    }

    /// Batches of 6 chunks (3 s), fast retries.
    fn config(spool: Option<&std::path::Path>) -> RecorderConfig {
        RecorderConfig {
            max_batch_duration: Duration::from_millis(6 * CHUNK_MS),
            max_age: Duration::from_secs(60),
            retry: RetryPolicy {
                max_attempts: 3,
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(4),
                held_retry_max: Duration::from_millis(4),
            },
            spool_dir: spool.map(|p| p.to_path_buf()),
            ..RecorderConfig::omi()
        }
    }

    /// Every object of the conversation as (name, bytes), in listing order.
    async fn objects(service: &ChunkService, conv: &str) -> Vec<(String, Vec<u8>)> {
        let (uid, conv) = ids(conv);
        let listing = service.list(&uid, &conv).await.unwrap();
        let mut out = Vec::new();
        for entry in listing.chunks {
            let body = service.store().read(&entry.path).await.unwrap();
            out.push((entry.name.to_string(), body.to_vec()));
        }
        out
    }

    fn expected(range: std::ops::Range<u64>) -> Vec<u8> {
        range.flat_map(|i| pcm(i).to_vec()).collect()
    }

    fn segments(dir: &std::path::Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_str()
                    .unwrap()
                    .ends_with(".seg")
            })
            .count()
    }

    #[tokio::test]
    async fn spooled_batches_flush_when_full_and_leave_the_spool() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store(None);
        let service = service(store);
        let (recorder, report) = Recorder::open(service.clone(), config(Some(dir.path())))
            .await
            .unwrap();
        assert_eq!(report.segments, 0);
        let (uid, conv) = ids("c1");
        for i in 0..14 {
            let durability = recorder
                .push(&uid, &conv, ts(i), pcm(i), None)
                .await
                .unwrap();
            assert_eq!(durability, Durability::Spooled);
        }
        recorder.flush_due().await.unwrap(); // waits for the background uploads
        let stats = recorder.stats().await;
        assert_eq!(stats.chunks_acked, 14);
        assert_eq!(
            stats.flushes[&FlushReason::Full],
            FlushCounts {
                batches: 2,
                chunks: 12,
                bytes: 12 * CHUNK_BYTES as u64
            }
        );
        assert_eq!(
            (stats.pending_batches, stats.pending_bytes),
            (1, 2 * CHUNK_BYTES)
        );
        assert_eq!(segments(dir.path()), 1, "only the pending batch is spooled");
        recorder.close().await.unwrap();
        assert_eq!(segments(dir.path()), 0);
        assert_eq!(
            recorder.stats().await.flushes[&FlushReason::Close].chunks,
            2
        );

        let objects = objects(&service, "c1").await;
        let names: Vec<&str> = objects.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                format!("{}-{}.batch.bin", ts(0), ts(5)),
                format!("{}-{}.batch.bin", ts(6), ts(11)),
                format!("{}-{}.batch.bin", ts(12), ts(13)),
            ]
        );
        let all: Vec<u8> = objects.into_iter().flat_map(|(_, b)| b).collect();
        assert_eq!(all, expected(0..14));
        assert!(matches!(
            recorder.push(&uid, &conv, ts(20), pcm(20), None).await,
            Err(RecorderError::Closed)
        ));
    }

    #[tokio::test]
    async fn memory_mode_acks_in_memory_and_flushes_on_close() {
        let (store, _) = store(None);
        let service = service(store);
        let (recorder, _) = Recorder::open(service.clone(), config(None)).await.unwrap();
        let (uid, conv) = ids("c1");
        for i in 0..3 {
            assert_eq!(
                recorder
                    .push(&uid, &conv, ts(i), pcm(i), None)
                    .await
                    .unwrap(),
                Durability::Memory
            );
        }
        assert!(objects(&service, "c1").await.is_empty());
        recorder.close().await.unwrap();
        let objects = objects(&service, "c1").await;
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].1, expected(0..3));
    }

    #[tokio::test]
    async fn duplicates_and_out_of_order_chunks_are_refused() {
        let (store, _) = store(None);
        let (recorder, _) = Recorder::open(service(store), config(None)).await.unwrap();
        let (uid, conv) = ids("c1");
        recorder
            .push(&uid, &conv, ts(5), pcm(5), None)
            .await
            .unwrap();
        for i in [5, 4] {
            let error = recorder
                .push(&uid, &conv, ts(i), pcm(i), None)
                .await
                .unwrap_err();
            assert!(
                matches!(error, RecorderError::Duplicate { timestamp, last, .. } if timestamp == ts(i) && last == ts(5)),
                "{error}"
            );
        }
        // Another conversation has its own mark.
        let (_, other) = ids("c2");
        recorder
            .push(&uid, &other, ts(0), pcm(0), None)
            .await
            .unwrap();
        assert_eq!(recorder.last_held(&uid, &conv).await, Some(ts(5)));
        assert_eq!(recorder.stats().await.duplicates, 2);
        // The mark survives the flush of the batch.
        recorder.close().await.unwrap();
        assert_eq!(recorder.last_held(&uid, &conv).await, Some(ts(5)));
    }

    #[tokio::test]
    async fn a_conversation_switch_flushes_the_previous_conversation() {
        let (store, _) = store(None);
        let service = service(store);
        let (recorder, _) = Recorder::open(service.clone(), config(None)).await.unwrap();
        let (uid, a) = ids("a");
        let (_, b) = ids("b");
        recorder.push(&uid, &a, ts(0), pcm(0), None).await.unwrap();
        recorder.push(&uid, &a, ts(1), pcm(1), None).await.unwrap();
        recorder.push(&uid, &b, ts(2), pcm(2), None).await.unwrap();
        recorder.flush_due().await.unwrap();
        let stats = recorder.stats().await;
        assert_eq!(stats.flushes[&FlushReason::ConversationSwitch].chunks, 2);
        assert_eq!(objects(&service, "a").await[0].1, expected(0..2));
        assert!(objects(&service, "b").await.is_empty());
        recorder.close().await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn old_batches_are_flushed_by_age() {
        let (store, _) = store(None);
        let service = service(store);
        let (recorder, _) = Recorder::open(service.clone(), config(None)).await.unwrap();
        let (uid, conv) = ids("c1");
        recorder
            .push(&uid, &conv, ts(0), pcm(0), None)
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(30)).await;
        recorder.flush_due().await.unwrap();
        assert!(objects(&service, "c1").await.is_empty(), "not old yet");
        tokio::time::advance(Duration::from_secs(31)).await;
        recorder.flush_due().await.unwrap();
        assert_eq!(recorder.stats().await.flushes[&FlushReason::Age].batches, 1);
        assert_eq!(objects(&service, "c1").await.len(), 1);
    }

    #[tokio::test]
    async fn temporary_errors_are_retried_with_backoff() {
        let plan = FaultPlan::new().rule(FaultRule::new(
            FaultOp::Close,
            FaultKind::Temporary,
            FaultSchedule::FirstN(2),
        ));
        let (store, fault) = store(Some(plan));
        let service = service(store);
        let (recorder, _) = Recorder::open(service.clone(), config(None)).await.unwrap();
        let (uid, conv) = ids("c1");
        for i in 0..6 {
            recorder
                .push(&uid, &conv, ts(i), pcm(i), None)
                .await
                .unwrap();
        }
        recorder.flush_due().await.unwrap();
        let stats = recorder.stats().await;
        assert_eq!(stats.failed_attempts, 2);
        assert_eq!(stats.flushes[&FlushReason::Full].batches, 1);
        assert_eq!(fault.unwrap().injected(FaultOp::Close), 2);
        assert_eq!(objects(&service, "c1").await[0].1, expected(0..6));
    }

    #[tokio::test]
    async fn permanent_errors_hold_the_batch_and_nothing_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        // The first 3 commits fail permanently: no retry within a flush.
        let plan = FaultPlan::new().rule(FaultRule::new(
            FaultOp::Close,
            FaultKind::Permanent,
            FaultSchedule::FirstN(3),
        ));
        let (store, fault) = store(Some(plan));
        let fault = fault.unwrap();
        let service = service(store);
        let (recorder, _) = Recorder::open(service.clone(), config(Some(dir.path())))
            .await
            .unwrap();
        let (uid, conv) = ids("c1");
        for i in 0..6 {
            recorder
                .push(&uid, &conv, ts(i), pcm(i), None)
                .await
                .unwrap();
        }
        let error = recorder.flush_due().await.unwrap_err();
        assert!(
            matches!(&error, RecorderError::Held { batches: 1, bytes, error } if *bytes == 6 * CHUNK_BYTES && !error.is_temporary()),
            "{error}"
        );
        assert_eq!(
            fault.injected(FaultOp::Close),
            1,
            "a permanent error is not retried"
        );
        // Pushes keep being acknowledged while the batch is held.
        for i in 6..8 {
            recorder
                .push(&uid, &conv, ts(i), pcm(i), None)
                .await
                .unwrap();
        }
        // Second failure at close (the held batch), then the pending batch's commit fails too.
        assert!(matches!(
            recorder.close().await,
            Err(RecorderError::Held { batches: 2, .. })
        ));
        assert_eq!(segments(dir.path()), 2, "both batches are still spooled");
        assert!(objects(&service, "c1").await.is_empty());
        // The fault has cleared: closing again lands both, each once.
        recorder.close().await.unwrap();
        assert_eq!(segments(dir.path()), 0);
        let objects = objects(&service, "c1").await;
        assert_eq!(objects.len(), 2);
        let all: Vec<u8> = objects.into_iter().flat_map(|(_, b)| b).collect();
        assert_eq!(all, expected(0..8));
    }

    #[tokio::test]
    async fn the_budget_pushes_back_when_uploads_fail() {
        let plan = FaultPlan::new().rule(FaultRule::new(
            FaultOp::Close,
            FaultKind::Permanent,
            FaultSchedule::Always,
        ));
        let (store, _) = store(Some(plan));
        let config = RecorderConfig {
            budget_bytes: 8 * CHUNK_BYTES,
            ..config(None)
        };
        let (recorder, _) = Recorder::open(service(store), config).await.unwrap();
        let (uid, conv) = ids("c1");
        for i in 0..8 {
            recorder
                .push(&uid, &conv, ts(i), pcm(i), None)
                .await
                .unwrap();
        }
        let error = recorder
            .push(&uid, &conv, ts(8), pcm(8), None)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, RecorderError::Backpressure { used_bytes, last_error: Some(_), .. } if *used_bytes == 8 * CHUNK_BYTES),
            "{error}"
        );
        let stats = recorder.stats().await;
        assert_eq!((stats.chunks_acked, stats.backpressure), (8, 1));
        assert_eq!(stats.held_bytes + stats.pending_bytes, 8 * CHUNK_BYTES);
        // The refused chunk was not taken: it can be pushed again later.
        assert_eq!(recorder.last_held(&uid, &conv).await, Some(ts(7)));
    }

    #[tokio::test]
    async fn the_budget_flushes_the_oldest_batch_to_make_room() {
        let (store, _) = store(None);
        let service = service(store);
        let config = RecorderConfig {
            budget_bytes: 4 * CHUNK_BYTES,
            ..config(None)
        };
        let (recorder, _) = Recorder::open(service.clone(), config).await.unwrap();
        let (uid, conv) = ids("c1");
        for i in 0..5 {
            recorder
                .push(&uid, &conv, ts(i), pcm(i), None)
                .await
                .unwrap();
        }
        assert_eq!(
            recorder.stats().await.flushes[&FlushReason::Budget].chunks,
            4
        );
        recorder.close().await.unwrap();
        let all: Vec<u8> = objects(&service, "c1")
            .await
            .into_iter()
            .flat_map(|(_, b)| b)
            .collect();
        assert_eq!(all, expected(0..5));
    }

    #[tokio::test]
    async fn a_crash_leaves_acked_chunks_in_the_spool_and_open_replays_them() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store(None);
        let service = service(store);
        let (uid, conv) = ids("c1");
        {
            let (recorder, _) = Recorder::open(service.clone(), config(Some(dir.path())))
                .await
                .unwrap();
            for i in 0..4 {
                recorder
                    .push(&uid, &conv, ts(i), pcm(i), None)
                    .await
                    .unwrap();
            }
            // "Crash": the recorder goes away without close.
        }
        assert!(objects(&service, "c1").await.is_empty());
        let (recorder, report) = Recorder::open(service.clone(), config(Some(dir.path())))
            .await
            .unwrap();
        assert_eq!((report.segments, report.chunks, report.uploaded), (1, 4, 1));
        assert_eq!(
            report.conversations,
            [RecoveredConversation {
                uid: uid.clone(),
                conversation: conv.clone(),
                chunks: 4,
                last: ts(3),
            }]
        );
        assert_eq!(
            recorder.stats().await.flushes[&FlushReason::Replay].chunks,
            4
        );
        assert_eq!(segments(dir.path()), 0);
        // The caller resumes after the last spooled chunk; pushing it again is refused.
        assert_eq!(
            recorder.resume_point(&uid, &conv).await.unwrap(),
            Some(ts(3))
        );
        assert!(matches!(
            recorder.push(&uid, &conv, ts(3), pcm(3), None).await,
            Err(RecorderError::Duplicate { .. })
        ));
        recorder
            .push(&uid, &conv, ts(4), pcm(4), None)
            .await
            .unwrap();
        recorder.close().await.unwrap();
        let all: Vec<u8> = objects(&service, "c1")
            .await
            .into_iter()
            .flat_map(|(_, b)| b)
            .collect();
        assert_eq!(all, expected(0..5));
    }

    #[tokio::test]
    async fn replaying_a_segment_that_was_already_stored_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store(None);
        let service = service(store);
        let (uid, conv) = ids("c1");
        let (recorder, _) = Recorder::open(service.clone(), config(Some(dir.path())))
            .await
            .unwrap();
        for i in 0..3 {
            recorder
                .push(&uid, &conv, ts(i), pcm(i), None)
                .await
                .unwrap();
        }
        // Keep a copy of the segment, as if the process died between the store's confirmation
        // and the segment's removal.
        let segment = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "seg"))
            .unwrap();
        let saved = std::fs::read(&segment).unwrap();
        recorder.close().await.unwrap();
        drop(recorder);
        std::fs::write(&segment, saved).unwrap();

        let writes = service.store().op_counts().write;
        let (recorder, report) = Recorder::open(service.clone(), config(Some(dir.path())))
            .await
            .unwrap();
        assert_eq!((report.segments, report.uploaded, report.held), (1, 1, 0));
        assert_eq!(
            service.store().op_counts().write,
            writes,
            "identical replay is a no-op"
        );
        assert_eq!(segments(dir.path()), 0);
        let objects = objects(&service, "c1").await;
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].1, expected(0..3));
        recorder.close().await.unwrap();
    }

    #[tokio::test]
    async fn resume_point_finds_chunks_stored_before_the_spool_was_emptied() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store(None);
        let service = service(store);
        let (uid, conv) = ids("c1");
        {
            let (recorder, _) = Recorder::open(service.clone(), config(Some(dir.path())))
                .await
                .unwrap();
            for i in 0..6 {
                recorder
                    .push(&uid, &conv, ts(i), pcm(i), None)
                    .await
                    .unwrap();
            }
            recorder.flush_due().await.unwrap();
        }
        // The spool is empty: only the store knows chunk 5 is there.
        let (recorder, report) = Recorder::open(service.clone(), config(Some(dir.path())))
            .await
            .unwrap();
        assert_eq!(report.segments, 0);
        assert_eq!(recorder.last_held(&uid, &conv).await, None);
        assert_eq!(
            recorder.resume_point(&uid, &conv).await.unwrap(),
            Some(ts(5))
        );
        assert!(matches!(
            recorder.push(&uid, &conv, ts(5), pcm(5), None).await,
            Err(RecorderError::Duplicate { .. })
        ));
        let (_, empty) = ids("never-recorded");
        assert_eq!(recorder.resume_point(&uid, &empty).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_torn_tail_after_a_crash_is_cut_and_the_rest_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store(None);
        let service = service(store);
        let (uid, conv) = ids("c1");
        {
            let (recorder, _) = Recorder::open(service.clone(), config(Some(dir.path())))
                .await
                .unwrap();
            for i in 0..3 {
                recorder
                    .push(&uid, &conv, ts(i), pcm(i), None)
                    .await
                    .unwrap();
            }
        }
        // A fourth record whose write was cut short by the crash (never acknowledged).
        let segment = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "seg"))
            .unwrap();
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&segment)
            .unwrap();
        std::io::Write::write_all(&mut file, &[0x11, 0x3e, 0, 0, 1, 2, 3, 4, 2, 9, 9]).unwrap();
        drop(file);
        let (recorder, report) = Recorder::open(service.clone(), config(Some(dir.path())))
            .await
            .unwrap();
        assert_eq!(
            (report.chunks, report.cut_bytes, report.uploaded),
            (3, 11, 1)
        );
        assert_eq!(objects(&service, "c1").await[0].1, expected(0..3));
        recorder.close().await.unwrap();
    }

    #[tokio::test]
    async fn pack_batches_split_where_chunks_overlap() {
        let (store, _) = store(None);
        let service = service_with(store, BatchLayout::Pack);
        let (recorder, _) = Recorder::open(service.clone(), config(None)).await.unwrap();
        let (uid, conv) = ids("c1");
        let jittered = Timestamp::from_millis(T0 + 900).unwrap(); // chunk 1 ends at T0 + 1000
        recorder
            .push(&uid, &conv, ts(0), pcm(0), None)
            .await
            .unwrap();
        recorder
            .push(&uid, &conv, ts(1), pcm(1), None)
            .await
            .unwrap();
        recorder
            .push(&uid, &conv, jittered, pcm(2), None)
            .await
            .unwrap();
        recorder.close().await.unwrap();
        let stats = recorder.stats().await;
        assert_eq!(stats.flushes[&FlushReason::Overlap].chunks, 2);
        assert_eq!(stats.flushes[&FlushReason::Close].chunks, 1);
        let listing = service.list(&uid, &conv).await.unwrap();
        let spans: Vec<(u64, u64)> = listing
            .chunks
            .iter()
            .map(|e| (e.start.as_millis() - T0, e.end.as_millis() - T0))
            .collect();
        assert_eq!(spans, [(0, 1_000), (900, 1_400)]);
        // Each pack holds exactly its chunks, whole.
        let mut stored = Vec::new();
        for entry in &listing.chunks {
            let object = service.store().read(&entry.path).await.unwrap();
            let index = chunk_format::pack::PackIndex::from_object(&object, None).unwrap();
            for (i, chunk) in index.entries().iter().enumerate() {
                let range = chunk.frame_range();
                let frame = &object[range.start as usize..range.end as usize];
                let audio = index.decode_frame(i, frame, None).unwrap();
                stored.push((chunk.start, audio));
            }
        }
        assert_eq!(stored.len(), 3);
        for ((start, audio), (expected_start, i)) in
            stored.iter().zip([(ts(0), 0), (ts(1), 1), (jittered, 2)])
        {
            assert_eq!(*start, expected_start);
            assert!(*audio == pcm(i), "chunk {i}");
        }
    }

    #[tokio::test]
    async fn chunks_without_a_whole_sample_are_refused() {
        let (store, _) = store(None);
        let (recorder, _) = Recorder::open(service_with(store, BatchLayout::Pack), config(None))
            .await
            .unwrap();
        let (uid, conv) = ids("c1");
        for bad in [Bytes::new(), Bytes::from_static(&[7])] {
            let error = recorder
                .push(&uid, &conv, ts(0), bad, None)
                .await
                .unwrap_err();
            assert!(
                matches!(error, RecorderError::InvalidChunk { .. }),
                "{error}"
            );
        }
        // An odd trailing byte is trimmed by the service, so the chunk is accepted.
        let mut odd = pcm(0).to_vec();
        odd.push(1);
        recorder.push(&uid, &conv, ts(0), odd, None).await.unwrap();
        assert_eq!(recorder.stats().await.chunks_acked, 1);
        recorder.close().await.unwrap();
    }

    #[tokio::test]
    async fn the_resume_point_of_a_pack_is_just_before_its_end() {
        let (store, _) = store(None);
        let service = service_with(store, BatchLayout::Pack);
        let (uid, conv) = ids("c1");
        let (recorder, _) = Recorder::open(service.clone(), config(None)).await.unwrap();
        for i in 0..3 {
            recorder
                .push(&uid, &conv, ts(i), pcm(i), None)
                .await
                .unwrap();
        }
        recorder.close().await.unwrap();
        let (recorder, _) = Recorder::open(service.clone(), config(None)).await.unwrap();
        let mark = recorder.resume_point(&uid, &conv).await.unwrap().unwrap();
        assert_eq!(mark.as_millis(), T0 + 3 * CHUNK_MS - 1);
        assert!(matches!(
            recorder.push(&uid, &conv, ts(2), pcm(2), None).await,
            Err(RecorderError::Duplicate { .. })
        ));
        recorder
            .push(&uid, &conv, ts(3), pcm(3), None)
            .await
            .unwrap();
        recorder.close().await.unwrap();
        assert_eq!(service.list(&uid, &conv).await.unwrap().chunks.len(), 2);
    }

    #[tokio::test]
    async fn a_single_upload_permit_still_lands_every_batch() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store(None);
        let service = service(store);
        let config = RecorderConfig {
            max_concurrent_uploads: 1,
            ..config(Some(dir.path()))
        };
        let (recorder, _) = Recorder::open(service.clone(), config).await.unwrap();
        // Three conversations of three users fill their batches at once.
        for i in 0..6 {
            for user in ["a", "b", "c"] {
                let uid = UserId::new(user).unwrap();
                let (_, conv) = ids("c1");
                recorder
                    .push(&uid, &conv, ts(i), pcm(i), None)
                    .await
                    .unwrap();
            }
        }
        recorder.flush_due().await.unwrap();
        let stats = recorder.stats().await;
        assert_eq!(stats.flushes[&FlushReason::Full].batches, 3);
        assert_eq!((stats.in_flight_batches, stats.held_batches), (0, 0));
        assert_eq!(segments(dir.path()), 0);
    }

    #[test]
    fn presets() {
        let omi = RecorderConfig::omi();
        assert_eq!(omi.max_batch_duration, Duration::from_secs(60));
        assert!(omi.spool_dir.is_none());
        let spool = RecorderConfig::spool("/var/spool/chunkvault");
        assert_eq!(spool.max_batch_duration, Duration::from_secs(600));
        assert!(spool.max_age > spool.max_batch_duration);
        // 10-minute batches: at most 6 per recorded hour.
        assert!(3600 / spool.max_batch_duration.as_secs() <= 6);
        let retry = RetryPolicy::default();
        assert_eq!(retry.held_delay(1), retry.max_backoff);
        assert_eq!(retry.held_delay(2), retry.max_backoff * 2);
        assert_eq!(retry.held_delay(40), retry.held_retry_max);
    }
}
