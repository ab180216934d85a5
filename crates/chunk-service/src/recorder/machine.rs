//! The recorder's decisions, without I/O: whether a chunk is admitted, which batch it joins,
//! when a batch is full, old or closed by the next chunk, and when a held batch is retried.
//! The engine (`engine.rs`) performs what these decide.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use chunk_format::Timestamp;
use chunk_store::{ConversationId, UserId};
use tokio::time::Instant;

use super::{FlushError, FlushReason, RecorderConfig};
use crate::config::{BatchLayout, ServiceConfig};
use crate::level::ProtectionLevel;
use crate::spool::{BatchId, ChunkLocation};
use crate::write::upload::Chunk;

/// Conversations whose last timestamp one stream remembers; past this only the current
/// conversation's mark is kept ([`super::Recorder::resume_point`] restores one).
const HIGH_WATER_CAP: usize = 1_024;

/// A user and conversation.
pub(super) type Key = (UserId, ConversationId);

/// Where a batch's chunks are.
#[derive(Debug, Clone)]
pub(super) enum Contents {
    /// In memory (no spool).
    Memory(Vec<Chunk>),
    /// In the spool's log.
    Spool {
        /// The batch's id in the log.
        id: BatchId,
        /// Its chunk records.
        chunks: Vec<ChunkLocation>,
    },
}

/// Where an accepted chunk went.
pub(super) enum Place {
    Memory(Chunk),
    Spool(ChunkLocation),
}

/// One batch: the chunks of one conversation that become one object.
#[derive(Debug, Clone)]
pub(super) struct Batch {
    pub(super) key: Key,
    pub(super) level: Option<ProtectionLevel>,
    pub(super) contents: Contents,
    pub(super) count: usize,
    pub(super) bytes: usize,
    pub(super) samples: u64,
    /// End of the last chunk's audio in milliseconds (its start plus its duration).
    pub(super) end_ms: u64,
    pub(super) opened: Instant,
    /// Failed flushes so far.
    pub(super) failures: u32,
    /// When `flush_due` may retry it (held batches).
    pub(super) retry_at: Instant,
    /// Its last failure (held batches).
    pub(super) error: Option<Arc<FlushError>>,
    /// The owning stream's byte count, released when the batch is stored.
    pub(super) owner: Arc<AtomicUsize>,
}

impl Batch {
    pub(super) fn new(
        key: Key,
        level: Option<ProtectionLevel>,
        contents: Contents,
        owner: Arc<AtomicUsize>,
        now: Instant,
    ) -> Batch {
        Batch {
            key,
            level,
            contents,
            count: 0,
            bytes: 0,
            samples: 0,
            end_ms: 0,
            opened: now,
            failures: 0,
            retry_at: now,
            error: None,
            owner,
        }
    }

    /// Whether its last failure was permanent: retrying cannot help until someone acts.
    pub(super) fn failed_for_good(&self) -> bool {
        self.error.as_ref().is_some_and(|e| !e.is_temporary())
    }
}

/// The rules batches follow: chunk admission, durations and limits, in one place.
#[derive(Debug, Clone)]
pub(super) struct Rules {
    packs: bool,
    /// Sample rate and bytes per sample frame that durations are counted in.
    rate: u32,
    block: u64,
    /// The configured PCM16 mono rate, for the batch duration limit.
    sample_rate: u32,
    pack_channels: u8,
    max_batch_ms: u64,
    max_chunks: usize,
    max_bytes: usize,
    pub(super) max_age: std::time::Duration,
    retry: super::RetryPolicy,
}

impl Rules {
    pub(super) fn new(config: &RecorderConfig, service: &ServiceConfig) -> Rules {
        let packs = service.batch_layout == BatchLayout::Pack;
        let (rate, block) = if packs {
            (
                service.pack.sample_rate,
                2 * u64::from(service.pack.channels.max(1)),
            )
        } else {
            (config.sample_rate, 2)
        };
        let max_chunks = if packs {
            config
                .max_batch_chunks
                .min(chunk_format::pack::MAX_CHUNKS as usize)
        } else {
            config.max_batch_chunks
        };
        Rules {
            packs,
            rate: rate.max(1),
            block,
            sample_rate: config.sample_rate.max(1),
            pack_channels: service.pack.channels,
            max_batch_ms: u64::try_from(config.max_batch_duration.as_millis()).unwrap_or(u64::MAX),
            max_chunks,
            max_bytes: config.max_batch_bytes,
            max_age: config.max_age,
            retry: config.retry,
        }
    }

    /// Why a chunk of `len` bytes would make its batch's upload fail for good, if it would:
    /// no whole sample frame, or (packs) misaligned or larger than a pack chunk may be.
    pub(super) fn refuse_chunk(&self, len: usize) -> Option<String> {
        let usable = len - len % 2;
        if usable == 0 {
            return Some("it holds no whole PCM16 sample".to_owned());
        }
        if !self.packs {
            return None;
        }
        let max = chunk_format::pack::MAX_CHUNK_BYTES as usize;
        if !(usable as u64).is_multiple_of(self.block) {
            Some(format!(
                "{usable} bytes are not whole frames of {} channels",
                self.pack_channels
            ))
        } else if usable > max {
            Some(format!(
                "{usable} bytes exceed a pack chunk's limit of {max}"
            ))
        } else {
            None
        }
    }

    /// Milliseconds of audio in `bytes` of PCM, as the batch layout counts them (a pack rounds
    /// each chunk's duration up to the next millisecond).
    pub(super) fn duration_ms(&self, bytes: usize) -> u64 {
        let samples = bytes as u64 / self.block;
        (samples * 1000).div_ceil(u64::from(self.rate))
    }

    /// Milliseconds of audio a batch holds, for its duration limit and logs.
    pub(super) fn audio_ms(&self, batch: &Batch) -> u64 {
        batch.samples * 1000 / u64::from(self.sample_rate)
    }

    fn is_full(&self, batch: &Batch) -> bool {
        self.audio_ms(batch) >= self.max_batch_ms
            || batch.count >= self.max_chunks
            || batch.bytes >= self.max_bytes
    }

    /// Whether `flush_due` retries a held batch now: its delay passed, and its failure may
    /// pass by itself (a permanent one waits for [`super::Recorder::retry_held`] or the next
    /// open).
    pub(super) fn retry_due(&self, batch: &Batch, now: Instant) -> bool {
        batch.retry_at <= now && !batch.failed_for_good()
    }

    /// Records a failed flush on the batch.
    pub(super) fn failed(&self, batch: &mut Batch, error: Arc<FlushError>, now: Instant) {
        batch.failures += 1;
        batch.retry_at = now + self.retry.held_delay(batch.failures);
        batch.error = Some(error);
    }
}

/// What a push does before its chunk is written.
#[derive(Debug)]
pub(super) struct Admission {
    /// Batches the chunk closes (a switch of conversation, an overlap), to upload.
    pub(super) closed: Vec<(Batch, FlushReason)>,
}

/// One user's stream: the conversation being recorded, its pending batch, and the last
/// timestamp held per conversation.
#[derive(Debug, Default)]
pub(super) struct Stream {
    current: Option<ConversationId>,
    pending: Option<Batch>,
    high_water: HashMap<ConversationId, Timestamp>,
}

impl Stream {
    /// The start of the last chunk held for `conversation`.
    pub(super) fn last_held(&self, conversation: &ConversationId) -> Option<Timestamp> {
        self.high_water.get(conversation).copied()
    }

    /// Raises the conversation's mark to `timestamp`.
    pub(super) fn raise(&mut self, conversation: &ConversationId, timestamp: Timestamp) {
        let mark = self
            .high_water
            .entry(conversation.clone())
            .or_insert(timestamp);
        *mark = (*mark).max(timestamp);
        if self.high_water.len() > HIGH_WATER_CAP {
            let keep = [
                self.current.as_ref(),
                self.pending.as_ref().map(|b| &b.key.1),
            ];
            self.high_water
                .retain(|c, _| keep.iter().flatten().any(|k| *k == c));
        }
    }

    /// Decides a push of a chunk at `timestamp` to `conversation`: `Err(last)` if the
    /// conversation already holds a chunk at or after it; otherwise the batches it closes.
    pub(super) fn admit(
        &mut self,
        rules: &Rules,
        conversation: &ConversationId,
        timestamp: Timestamp,
    ) -> Result<Admission, Timestamp> {
        if let Some(last) = self.last_held(conversation)
            && timestamp <= last
        {
            return Err(last);
        }
        let mut closed = Vec::new();
        if self.current.as_ref() != Some(conversation) {
            self.current = Some(conversation.clone());
            if let Some(batch) = self.pending.take_if(|b| &b.key.1 != conversation) {
                closed.push((batch, FlushReason::ConversationSwitch));
            }
        }
        if rules.packs
            && let Some(batch) = self
                .pending
                .take_if(|b| b.count > 0 && timestamp.as_millis() < b.end_ms)
        {
            tracing::debug!(
                uid = %batch.key.0,
                conversation = %batch.key.1,
                %timestamp,
                previous_end_ms = batch.end_ms,
                "chunk overlaps the batch's last chunk; closing the batch"
            );
            closed.push((batch, FlushReason::Overlap));
        }
        Ok(Admission { closed })
    }

    /// The pending batch, if any.
    pub(super) fn pending(&self) -> Option<&Batch> {
        self.pending.as_ref()
    }

    /// Starts the pending batch (there was none).
    pub(super) fn open(&mut self, batch: Batch) {
        debug_assert!(self.pending.is_none());
        self.pending = Some(batch);
    }

    /// Takes the pending batch out (to upload it).
    pub(super) fn take_pending(&mut self) -> Option<Batch> {
        self.pending.take()
    }

    /// Takes the pending batch if it holds no chunk (its first append failed).
    pub(super) fn take_empty(&mut self) -> Option<Batch> {
        self.pending.take_if(|b| b.count == 0)
    }

    /// Takes the pending batch if it is older than `max_age`.
    pub(super) fn take_due(&mut self, rules: &Rules, now: Instant) -> Option<Batch> {
        self.pending
            .take_if(|b| now.duration_since(b.opened) >= rules.max_age)
    }

    /// Records a durable chunk in the pending batch; returns the batch if it is now full or
    /// old, to upload.
    pub(super) fn accept(
        &mut self,
        rules: &Rules,
        timestamp: Timestamp,
        len: usize,
        place: Place,
        now: Instant,
    ) -> Option<(Batch, FlushReason)> {
        let batch = self.pending.as_mut()?;
        match (&mut batch.contents, place) {
            (Contents::Memory(chunks), Place::Memory(chunk)) => chunks.push(chunk),
            (Contents::Spool { chunks, .. }, Place::Spool(location)) => chunks.push(location),
            // The engine places chunks where the batch keeps them.
            _ => debug_assert!(false, "chunk placed where its batch does not keep chunks"),
        }
        batch.count += 1;
        batch.bytes += len;
        batch.samples += (len / 2) as u64;
        batch.end_ms = timestamp.as_millis() + rules.duration_ms(len);
        let reason = if rules.is_full(batch) {
            Some(FlushReason::Full)
        } else if now.duration_since(batch.opened) >= rules.max_age {
            Some(FlushReason::Age)
        } else {
            None
        };
        let conversation = batch.key.1.clone();
        self.raise(&conversation, timestamp);
        let reason = reason?;
        self.pending.take().map(|batch| (batch, reason))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rules(layout: BatchLayout) -> Rules {
        let config = RecorderConfig {
            max_batch_duration: Duration::from_millis(1_000),
            ..RecorderConfig::omi()
        };
        let service = ServiceConfig {
            batch_layout: layout,
            ..ServiceConfig::default()
        };
        Rules::new(&config, &service)
    }

    fn ts(ms: u64) -> Timestamp {
        Timestamp::from_millis(1_700_000_000_000 + ms).unwrap()
    }

    fn conv(name: &str) -> ConversationId {
        ConversationId::new(name).unwrap()
    }

    fn open(stream: &mut Stream, name: &str, now: Instant) {
        let key = (UserId::new("u").unwrap(), conv(name));
        let batch = Batch::new(key, None, Contents::Memory(Vec::new()), Arc::default(), now);
        stream.open(batch);
    }

    /// 500 ms of 16 kHz PCM16.
    const HALF_SECOND: usize = 16_000;

    fn push(
        stream: &mut Stream,
        rules: &Rules,
        name: &str,
        ms: u64,
        now: Instant,
    ) -> (Admission, Option<(Batch, FlushReason)>) {
        let admission = stream.admit(rules, &conv(name), ts(ms)).unwrap();
        if stream.pending().is_none() {
            open(stream, name, now);
        }
        let chunk = Chunk::new(ts(ms), bytes::Bytes::from(vec![0; HALF_SECOND]));
        let flushed = stream.accept(rules, ts(ms), HALF_SECOND, Place::Memory(chunk), now);
        (admission, flushed)
    }

    #[test]
    fn a_batch_fills_by_duration_and_the_mark_refuses_repeats() {
        let rules = rules(BatchLayout::Omi);
        let now = Instant::now();
        let mut stream = Stream::default();
        assert!(push(&mut stream, &rules, "a", 0, now).1.is_none());
        let (_, flushed) = push(&mut stream, &rules, "a", 500, now);
        let (batch, reason) = flushed.unwrap();
        assert_eq!((batch.count, reason), (2, FlushReason::Full));
        assert_eq!(
            stream.admit(&rules, &conv("a"), ts(500)).unwrap_err(),
            ts(500)
        );
        assert_eq!(
            stream.admit(&rules, &conv("a"), ts(100)).unwrap_err(),
            ts(500)
        );
        assert!(stream.admit(&rules, &conv("b"), ts(100)).is_ok());
    }

    #[test]
    fn a_switch_closes_the_other_conversation_and_an_overlap_closes_a_pack() {
        let rules = rules(BatchLayout::Pack);
        let now = Instant::now();
        let mut stream = Stream::default();
        push(&mut stream, &rules, "a", 0, now);
        let (admission, _) = push(&mut stream, &rules, "b", 10_000, now);
        assert_eq!(admission.closed.len(), 1);
        assert_eq!(admission.closed[0].1, FlushReason::ConversationSwitch);
        // Starts 100 ms before the previous chunk ends.
        let (admission, _) = push(&mut stream, &rules, "b", 10_400, now);
        assert_eq!(admission.closed[0].1, FlushReason::Overlap);
        assert_eq!(admission.closed[0].0.count, 1);
    }

    #[test]
    fn age_and_permanent_failures() {
        let rules = rules(BatchLayout::Omi);
        let now = Instant::now();
        let mut stream = Stream::default();
        push(&mut stream, &rules, "a", 0, now);
        assert!(stream.take_due(&rules, now).is_none());
        let mut batch = stream.take_due(&rules, now + rules.max_age).unwrap();
        let spool_error = crate::spool::SpoolError::Closed;
        rules.failed(&mut batch, Arc::new(FlushError::Spool(spool_error)), now);
        assert!(batch.failed_for_good());
        assert!(!rules.retry_due(&batch, now + Duration::from_secs(3_600)));
    }

    #[test]
    fn chunks_a_layout_cannot_store_are_refused() {
        let packs = rules(BatchLayout::Pack);
        assert!(packs.refuse_chunk(0).is_some());
        assert!(packs.refuse_chunk(1).is_some());
        assert!(
            packs.refuse_chunk(3).is_none(),
            "a trailing odd byte is trimmed"
        );
        assert!(
            packs
                .refuse_chunk(chunk_format::pack::MAX_CHUNK_BYTES as usize + 2)
                .is_some()
        );
        assert_eq!(
            packs.duration_ms(2),
            1,
            "a pack rounds up to the millisecond"
        );
    }
}
