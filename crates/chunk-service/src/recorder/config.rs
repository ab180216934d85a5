//! The recorder's configuration: batch limits, retries, and the node's stream limits.

use std::path::PathBuf;
use std::time::Duration;

use crate::spool::SpoolOptions;

/// How upload failures are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per flush (at least 1); only temporary errors are retried.
    pub max_attempts: u32,
    /// Delay before the second attempt; doubled each time.
    pub initial_backoff: Duration,
    /// Largest delay between attempts.
    pub max_backoff: Duration,
    /// Largest delay before [`Recorder::flush_due`](super::Recorder::flush_due) retries a held batch again (the delay
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
    pub(super) fn held_delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(16);
        self.max_backoff
            .saturating_mul(1 << doublings)
            .min(self.held_retry_max)
    }
}

/// A node's limits, set once for the fleet: how many streams it carries and what each may
/// keep. Totals follow the number of streams, so a node with thousands of streams needs no
/// tuning beyond `max_streams`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamLimits {
    /// Streams (users with a batch accepting chunks) at once. A push that would open one
    /// more is refused as [`RecorderError::TooManyStreams`](super::RecorderError::TooManyStreams).
    pub max_streams: usize,
    /// PCM bytes one stream may keep in pending, uploading and held batches. A push over it
    /// first uploads the stream's own batches, then fails with backpressure.
    pub stream_bytes: usize,
    /// PCM bytes all streams together may keep (memory without a spool, disk with one);
    /// `None` leaves the total at `max_streams × stream_bytes`. A push over it first uploads
    /// the oldest batches of any stream, then fails with backpressure.
    pub total_bytes: Option<usize>,
}

impl StreamLimits {
    /// The total the limits allow.
    pub fn total(&self) -> usize {
        self.total_bytes
            .unwrap_or_else(|| self.max_streams.saturating_mul(self.stream_bytes))
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
    /// conversation and by [`Recorder::flush_due`](super::Recorder::flush_due)(super::Recorder::flush_due)).
    pub max_age: Duration,
    /// Sample rate of the PCM16 mono chunks, for durations.
    pub sample_rate: u32,
    /// Streams and bytes the node may keep before pushes wait and then fail.
    pub limits: StreamLimits,
    /// Retries of a failed upload.
    pub retry: RetryPolicy,
    /// Batch uploads running at once (at least 1). With a spool, a batch is read back into
    /// memory only when its upload starts, so this also bounds the spool mode's memory to
    /// about `max_concurrent_uploads × max_batch_bytes`. The presets run 8: each upload
    /// waits on the store (and on fs, its fsyncs) about as long as it computes, so 8 keep two
    /// cores busy where 4 did not (docs/BENCHMARKS.md, "Recorder at fleet scale").
    pub max_concurrent_uploads: usize,
    /// Directory of the durable spool; `None` holds batches in memory only.
    pub spool_dir: Option<PathBuf>,
    /// How the spool commits (group commit interval, segment size).
    pub spool: SpoolOptions,
}

/// Streams a preset carries.
const PRESET_STREAMS: usize = 10_000;

/// PCM16 mono bytes of `duration` at `rate`.
fn pcm_bytes(duration: Duration, rate: u32) -> usize {
    let bytes = duration.as_millis() * u128::from(rate) * 2 / 1000;
    usize::try_from(bytes).unwrap_or(usize::MAX)
}

impl RecorderConfig {
    /// Omi's pusher numbers: 60 s batches, flushed at 60 s of age, no spool (a crash loses
    /// what is buffered). Up to 10,000 streams, each keeping up to two batches of 16 kHz
    /// audio in memory (3.84 MB), with no other total.
    pub fn omi() -> RecorderConfig {
        let max_batch_duration = Duration::from_secs(60);
        let sample_rate = 16_000;
        RecorderConfig {
            max_batch_duration,
            max_batch_chunks: 1_000,
            max_batch_bytes: 64 * 1024 * 1024,
            max_age: Duration::from_secs(60),
            sample_rate,
            limits: StreamLimits {
                max_streams: PRESET_STREAMS,
                stream_bytes: 2 * pcm_bytes(max_batch_duration, sample_rate),
                total_bytes: None,
            },
            retry: RetryPolicy::default(),
            max_concurrent_uploads: 8,
            spool_dir: None,
            spool: SpoolOptions::default(),
        }
    }

    /// The spool preset: 10-minute batches (at most 6 writes per recorded hour) made safe by
    /// the durable local spool in `dir`. The age limit is 11 minutes, so a live stream's
    /// batches fill up by duration before they age out (a stalled stream is still flushed).
    /// Up to 10,000 streams, each keeping up to two batches of 16 kHz audio on disk
    /// (38.4 MB); set [`StreamLimits::total_bytes`] to the disk the spool may fill.
    pub fn spool(dir: impl Into<PathBuf>) -> RecorderConfig {
        let omi = RecorderConfig::omi();
        let max_batch_duration = Duration::from_secs(600);
        RecorderConfig {
            max_batch_duration,
            max_age: Duration::from_secs(660),
            limits: StreamLimits {
                stream_bytes: 2 * pcm_bytes(max_batch_duration, omi.sample_rate),
                ..omi.limits
            },
            spool_dir: Some(dir.into()),
            ..omi
        }
    }
}
