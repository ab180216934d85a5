//! What the recorder reports: flush reasons, counters and gauges, and what recovery found.

use std::collections::BTreeMap;
use std::sync::Arc;

use chunk_format::Timestamp;
use chunk_store::{ConversationId, UserId};

use super::FlushError;

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
    /// [`Recorder::close`](super::Recorder::close).
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
    /// Pushes refused as [`RecorderError::Duplicate`](super::RecorderError::Duplicate).
    pub duplicates: u64,
    /// Pushes refused as [`RecorderError::Backpressure`](super::RecorderError::Backpressure).
    pub backpressure: u64,
    /// Pushes refused as [`RecorderError::TooManyStreams`](super::RecorderError::TooManyStreams).
    pub refused_streams: u64,
    /// Batches uploaded, by reason.
    pub flushes: BTreeMap<FlushReason, FlushCounts>,
    /// Upload attempts that failed.
    pub failed_attempts: u64,
    /// fsyncs of the spool that acknowledged chunks (0 without a spool).
    pub spool_syncs: u64,
    /// Batches accepting chunks (one per open stream).
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

/// A conversation found in the spool by [`Recorder::open`](super::Recorder::open).
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

/// What [`Recorder::open`](super::Recorder::open) found and replayed.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Log segments found in the spool.
    pub segments: usize,
    /// Batches found in them (opened and not retired), format-1 segments included.
    pub batches: usize,
    /// Format-1 segment files (one per batch, from before the log) moved into the log.
    pub migrated: usize,
    /// Chunks they held.
    pub chunks: usize,
    /// PCM bytes they held.
    pub pcm_bytes: u64,
    /// Torn tail bytes cut.
    pub cut_bytes: u64,
    /// Batches uploaded (or found already stored) and retired during recovery.
    pub uploaded: usize,
    /// Batches whose upload failed; they are held for retry.
    pub held: usize,
    /// The last failure of a held batch.
    pub error: Option<Arc<FlushError>>,
    /// Per conversation, what the spool held.
    pub conversations: Vec<RecoveredConversation>,
    /// Temporary files of killed writers removed from an fs store (older than
    /// [`TEMP_SWEEP_AGE`]; see [`chunk_store::Store::sweep_fs_temp`]).
    pub temp_files_removed: usize,
}

/// Age above which [`Recorder::open`](super::Recorder::open) removes an fs store's temporary files: far above the
/// longest write of one batch, so a write still going on in another process is never touched.
pub const TEMP_SWEEP_AGE: std::time::Duration = std::time::Duration::from_secs(3600);
