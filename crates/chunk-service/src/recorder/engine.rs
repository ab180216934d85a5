//! The recorder's engine: performs what the state machine (`machine.rs`) decides — spool
//! appends, uploads, retries — with per-stream state sharded so that a push for one stream
//! never waits on another stream's I/O.
//!
//! Locks: each stream has its own async mutex, held by a push of that stream across its own
//! append (pushes of one user are ordered). Shard maps, the held list and the counters are
//! plain mutexes held only to read or update memory, never across I/O. Background work
//! (`flush_due`, budget flushes of other streams) only `try_lock`s a stream, so it never
//! waits for a push in progress: that push checks its batch's age itself.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use chunk_format::{ObjectKind, Timestamp};
use chunk_store::UserId;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use super::machine::{Batch, Contents, Key, Place, Rules, Stream};
use super::{
    BudgetScope, Durability, FlushError, FlushReason, RecorderConfig, RecorderError, RecorderStats,
    RecoveredConversation, RecoveryReport, TEMP_SWEEP_AGE,
};
use crate::level::ProtectionLevel;
use crate::service::ChunkService;
use crate::spool::{BatchHeader, Spool, SpoolError};
use crate::write::upload::{Chunk, UploadOptions, UploadReport};

/// Upload attempts a push makes to free budget before it fails with backpressure.
const BUDGET_ROUNDS: usize = 8;
/// Shards of the stream map.
const SHARDS: usize = 64;

fn guard<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One stream's state and its byte count (which uploads release without its lock).
#[derive(Debug, Default)]
struct Slot {
    stream: tokio::sync::Mutex<Stream>,
    bytes: Arc<AtomicUsize>,
}

/// One shard of the stream map.
type Shard = Mutex<HashMap<UserId, Arc<Slot>>>;

/// Uploads running, by id, so that `flush_due` waits for the ones it saw start.
#[derive(Debug, Default)]
struct InFlight {
    ids: BTreeSet<u64>,
    bytes: usize,
    next: u64,
}

pub(super) struct Inner {
    service: ChunkService,
    pub(super) config: RecorderConfig,
    rules: Rules,
    spool: Option<Spool>,
    shards: Box<[Shard]>,
    hasher: RandomState,
    held: Mutex<Vec<Batch>>,
    stats: Mutex<RecorderStats>,
    in_flight: Mutex<InFlight>,
    /// Notified whenever an upload ends.
    progress: Notify,
    /// PCM bytes of every pending, uploading and held batch.
    used: AtomicUsize,
    /// PCM bytes of pending batches.
    pending_bytes: AtomicUsize,
    /// Streams with a pending batch.
    open_streams: AtomicUsize,
    closed: AtomicBool,
    /// Permits of `max_concurrent_uploads`.
    uploads: Semaphore,
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

impl Inner {
    pub(super) async fn open(
        service: ChunkService,
        config: RecorderConfig,
    ) -> Result<(Arc<Inner>, RecoveryReport), RecorderError> {
        let mut report = RecoveryReport::default();
        let (spool, recovered) = match &config.spool_dir {
            None => (None, Vec::new()),
            Some(dir) => {
                let (dir, options) = (dir.clone(), config.spool);
                let (spool, found) = blocking(move || Spool::open(dir, options)).await?;
                report.segments = found.segments;
                report.batches = found.batches.len();
                report.migrated = found.migrated;
                report.cut_bytes = found.cut_bytes;
                (Some(spool), found.batches)
            }
        };
        let rules = Rules::new(&config, service.config());
        let inner = Arc::new(Inner {
            uploads: Semaphore::new(config.max_concurrent_uploads.max(1)),
            service,
            config,
            rules,
            spool,
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            held: Mutex::default(),
            stats: Mutex::default(),
            in_flight: Mutex::default(),
            progress: Notify::new(),
            used: AtomicUsize::new(0),
            pending_bytes: AtomicUsize::new(0),
            open_streams: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        });

        let now = Instant::now();
        let mut batches = Vec::with_capacity(recovered.len());
        for found in recovered {
            let BatchHeader {
                uid,
                conversation,
                level,
            } = found.header;
            let last = found.chunks.last().map(|c| c.timestamp);
            let first_chunks = found.chunks.len();
            report.chunks += first_chunks;
            report.pcm_bytes += found.pcm_bytes;
            let bytes = usize::try_from(found.pcm_bytes).unwrap_or(usize::MAX);
            let slot = inner.slot(&uid);
            if let Some(last) = last {
                slot.stream.lock().await.raise(&conversation, last);
                match report
                    .conversations
                    .iter_mut()
                    .find(|c| c.uid == uid && c.conversation == conversation)
                {
                    Some(seen) => {
                        seen.chunks += first_chunks;
                        seen.last = seen.last.max(last);
                    }
                    None => report.conversations.push(RecoveredConversation {
                        uid: uid.clone(),
                        conversation: conversation.clone(),
                        chunks: first_chunks,
                        last,
                    }),
                }
            }
            let contents = Contents::Spool {
                id: found.id,
                chunks: found.chunks,
            };
            let mut batch = Batch::new(
                (uid, conversation),
                level,
                contents,
                slot.bytes.clone(),
                now,
            );
            batch.count = first_chunks;
            batch.bytes = bytes;
            batch.samples = found.pcm_bytes / 2;
            slot.bytes.fetch_add(bytes, Ordering::Relaxed);
            inner.used.fetch_add(bytes, Ordering::Relaxed);
            batches.push(batch);
        }
        let uploads = batches
            .into_iter()
            .map(|batch| inner.upload(batch, FlushReason::Replay));
        for outcome in futures::future::join_all(uploads).await {
            match outcome {
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
        if report.batches > 0 || report.migrated > 0 {
            tracing::info!(
                segments = report.segments,
                batches = report.batches,
                migrated = report.migrated,
                chunks = report.chunks,
                cut_bytes = report.cut_bytes,
                uploaded = report.uploaded,
                held = report.held,
                "spool replayed"
            );
        }
        Ok((inner, report))
    }

    fn shard(&self, uid: &UserId) -> &Shard {
        let index = (self.hasher.hash_one(uid) as usize) % self.shards.len();
        &self.shards[index]
    }

    /// The user's stream, created on first use.
    fn slot(&self, uid: &UserId) -> Arc<Slot> {
        guard(self.shard(uid))
            .entry(uid.clone())
            .or_default()
            .clone()
    }

    fn existing_slot(&self, uid: &UserId) -> Option<Arc<Slot>> {
        guard(self.shard(uid)).get(uid).cloned()
    }

    fn all_slots(&self) -> Vec<Arc<Slot>> {
        self.shards
            .iter()
            .flat_map(|shard| guard(shard).values().cloned().collect::<Vec<_>>())
            .collect()
    }

    fn check_open(&self) -> Result<(), RecorderError> {
        if self.closed.load(Ordering::Acquire) {
            Err(RecorderError::Closed)
        } else {
            Ok(())
        }
    }

    /// Accounts a batch that left its stream's pending slot.
    fn left_pending(&self, batch: &Batch) {
        self.pending_bytes.fetch_sub(batch.bytes, Ordering::Relaxed);
        self.open_streams.fetch_sub(1, Ordering::Relaxed);
    }

    pub(super) async fn push(
        self: Arc<Self>,
        key: Key,
        timestamp: Timestamp,
        pcm: Bytes,
        level: Option<ProtectionLevel>,
    ) -> Result<Durability, RecorderError> {
        self.check_open()?;
        if let Some(reason) = self.rules.refuse_chunk(pcm.len()) {
            return Err(RecorderError::InvalidChunk {
                uid: key.0.to_string(),
                conversation: key.1.to_string(),
                timestamp,
                reason,
            });
        }
        let slot = self.slot(&key.0);
        let mut stream = slot.stream.lock().await;
        self.check_open()?;
        let admission = match stream.admit(&self.rules, &key.1, timestamp) {
            Ok(admission) => admission,
            Err(last) => {
                guard(&self.stats).duplicates += 1;
                return Err(RecorderError::Duplicate {
                    uid: key.0.to_string(),
                    conversation: key.1.to_string(),
                    timestamp,
                    last,
                });
            }
        };
        for (batch, reason) in admission.closed {
            self.left_pending(&batch);
            self.spawn_upload(batch, reason);
        }
        let len = pcm.len();
        self.reserve(&mut stream, &slot, &key.0, len).await?;
        if stream.pending().is_none() {
            let max = self.config.limits.max_streams;
            if self.open_streams.load(Ordering::Relaxed) >= max {
                self.release(&slot, len);
                guard(&self.stats).refused_streams += 1;
                return Err(RecorderError::TooManyStreams {
                    uid: key.0.to_string(),
                    max_streams: max,
                });
            }
            let contents = match &self.spool {
                None => Contents::Memory(Vec::new()),
                Some(spool) => Contents::Spool {
                    id: spool.new_batch(),
                    chunks: Vec::new(),
                },
            };
            tracing::debug!(uid = %key.0, conversation = %key.1, "batch opened");
            stream.open(Batch::new(
                key.clone(),
                level,
                contents,
                slot.bytes.clone(),
                Instant::now(),
            ));
            self.open_streams.fetch_add(1, Ordering::Relaxed);
        }
        let (place, durability) = match (&self.spool, stream.pending().map(|b| (&b.contents, b))) {
            (Some(spool), Some((Contents::Spool { id, .. }, batch))) => {
                let header = (batch.count == 0).then(|| BatchHeader {
                    uid: key.0.clone(),
                    conversation: key.1.clone(),
                    level: batch.level,
                });
                match spool
                    .append(*id, header.as_ref(), timestamp, pcm.clone())
                    .await
                {
                    Ok(location) => (Place::Spool(location), Durability::Spooled),
                    Err(error) => {
                        self.release(&slot, len);
                        if let Some(empty) = stream.take_empty() {
                            self.left_pending(&empty);
                        }
                        return Err(RecorderError::Spool(error));
                    }
                }
            }
            _ => (
                Place::Memory(Chunk::new(timestamp, pcm)),
                Durability::Memory,
            ),
        };
        let flush = stream.accept(&self.rules, timestamp, len, place, Instant::now());
        self.pending_bytes.fetch_add(len, Ordering::Relaxed);
        drop(stream);
        guard(&self.stats).chunks_acked += 1;
        if let Some((batch, reason)) = flush {
            self.left_pending(&batch);
            self.spawn_upload(batch, reason);
        }
        Ok(durability)
    }

    fn release(&self, slot: &Slot, len: usize) {
        slot.bytes.fetch_sub(len, Ordering::Relaxed);
        self.used.fetch_sub(len, Ordering::Relaxed);
    }

    /// Reserves `len` bytes against the stream's and the node's budgets, uploading batches
    /// (awaited) to make room: the stream's own first, then, for the total, the oldest held
    /// or pending batch of any stream.
    async fn reserve(
        &self,
        stream: &mut Stream,
        slot: &Slot,
        uid: &UserId,
        len: usize,
    ) -> Result<(), RecorderError> {
        let limits = self.config.limits;
        let total = limits.total();
        let mut rounds = 0;
        let mut last_error = None;
        loop {
            let mine = slot.bytes.load(Ordering::Relaxed);
            let all = self.used.load(Ordering::Relaxed);
            let scope = if mine.saturating_add(len) > limits.stream_bytes {
                BudgetScope::Stream
            } else if all.saturating_add(len) > total {
                BudgetScope::Total
            } else {
                slot.bytes.fetch_add(len, Ordering::Relaxed);
                self.used.fetch_add(len, Ordering::Relaxed);
                return Ok(());
            };
            let backpressure = |last_error| {
                guard(&self.stats).backpressure += 1;
                let (used_bytes, budget_bytes) = match scope {
                    BudgetScope::Stream => (mine, limits.stream_bytes),
                    BudgetScope::Total => (all, total),
                };
                RecorderError::Backpressure {
                    scope,
                    used_bytes,
                    budget_bytes,
                    last_error,
                }
            };
            if rounds >= BUDGET_ROUNDS || last_error.is_some() {
                return Err(backpressure(last_error));
            }
            rounds += 1;
            let held = self.take_oldest_held(|b| scope == BudgetScope::Total || &b.key.0 == uid);
            let victim = match held {
                Some(batch) => Some(batch),
                None => match stream.take_pending() {
                    Some(batch) => {
                        self.left_pending(&batch);
                        Some(batch)
                    }
                    None if scope == BudgetScope::Total => self.take_oldest_pending_elsewhere(uid),
                    None => None,
                },
            };
            match victim {
                Some(batch) => {
                    if let Err(error) = self.upload(batch, FlushReason::Budget).await {
                        last_error = Some(error);
                    }
                }
                None if !guard(&self.in_flight).ids.is_empty() => {
                    let progress = self.progress.notified();
                    if !guard(&self.in_flight).ids.is_empty() {
                        progress.await;
                    }
                }
                None => return Err(backpressure(None)),
            }
        }
    }

    fn take_oldest_held(&self, eligible: impl Fn(&Batch) -> bool) -> Option<Batch> {
        let mut held = guard(&self.held);
        let index = held
            .iter()
            .enumerate()
            .filter(|(_, b)| eligible(b))
            .min_by_key(|(_, b)| b.opened)
            .map(|(i, _)| i)?;
        Some(held.swap_remove(index))
    }

    /// The oldest pending batch of another stream that is not pushing right now.
    fn take_oldest_pending_elsewhere(&self, uid: &UserId) -> Option<Batch> {
        let mut oldest: Option<(Instant, Arc<Slot>)> = None;
        for slot in self.all_slots() {
            let Ok(stream) = slot.stream.try_lock() else {
                continue;
            };
            let Some(opened) = stream
                .pending()
                .filter(|b| &b.key.0 != uid)
                .map(|b| b.opened)
            else {
                continue;
            };
            drop(stream);
            if oldest.as_ref().is_none_or(|(at, _)| opened < *at) {
                oldest = Some((opened, slot));
            }
        }
        let (_, slot) = oldest?;
        let batch = slot.stream.try_lock().ok()?.take_pending()?;
        self.left_pending(&batch);
        Some(batch)
    }

    pub(super) async fn flush_due(self: Arc<Self>) -> Result<(), RecorderError> {
        let running: Vec<u64> = guard(&self.in_flight).ids.iter().copied().collect();
        self.wait_for(&running).await;
        let now = Instant::now();
        let mut batches = Vec::new();
        {
            let mut held = guard(&self.held);
            let (due, wait) = std::mem::take(&mut *held)
                .into_iter()
                .partition(|b| self.rules.retry_due(b, now));
            *held = wait;
            batches.extend(due.into_iter().map(|b: Batch| (b, FlushReason::Retry)));
        }
        for slot in self.all_slots() {
            let Ok(mut stream) = slot.stream.try_lock() else {
                continue;
            };
            if let Some(batch) = stream.take_due(&self.rules, now) {
                self.left_pending(&batch);
                batches.push((batch, FlushReason::Age));
            }
        }
        self.upload_all(batches).await;
        self.held_result()
    }

    /// Retries every held batch now, permanent failures included.
    pub(super) async fn retry_held(self: Arc<Self>) -> Result<(), RecorderError> {
        let held = std::mem::take(&mut *guard(&self.held));
        self.upload_all(held.into_iter().map(|b| (b, FlushReason::Retry)).collect())
            .await;
        self.held_result()
    }

    pub(super) async fn close(self: Arc<Self>) -> Result<(), RecorderError> {
        self.closed.store(true, Ordering::Release);
        self.wait_idle().await;
        let mut batches = Vec::new();
        {
            let mut held = guard(&self.held);
            let (retry, keep) = std::mem::take(&mut *held)
                .into_iter()
                .partition(|b: &Batch| !b.failed_for_good());
            *held = keep;
            batches.extend(retry.into_iter().map(|b| (b, FlushReason::Retry)));
        }
        for slot in self.all_slots() {
            if let Some(batch) = slot.stream.lock().await.take_pending() {
                self.left_pending(&batch);
                batches.push((batch, FlushReason::Close));
            }
        }
        self.upload_all(batches).await;
        self.wait_idle().await;
        self.held_result()
    }

    async fn upload_all(&self, batches: Vec<(Batch, FlushReason)>) {
        let uploads = batches
            .into_iter()
            .map(|(batch, reason)| self.upload(batch, reason));
        // A failure is held; the callers report it.
        futures::future::join_all(uploads).await;
    }

    pub(super) async fn resume_point(
        self: Arc<Self>,
        key: Key,
    ) -> Result<Option<Timestamp>, RecorderError> {
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
        let slot = self.slot(&key.0);
        let mut stream = slot.stream.lock().await;
        if let Some(stored) = stored {
            stream.raise(&key.1, stored);
        }
        Ok(stream.last_held(&key.1))
    }

    pub(super) async fn last_held(&self, key: &Key) -> Option<Timestamp> {
        let slot = self.existing_slot(&key.0)?;
        let stream = slot.stream.lock().await;
        stream.last_held(&key.1)
    }

    pub(super) fn stats(&self) -> RecorderStats {
        let mut stats = guard(&self.stats).clone();
        stats.pending_batches = self.open_streams.load(Ordering::Relaxed);
        stats.pending_bytes = self.pending_bytes.load(Ordering::Relaxed);
        {
            let in_flight = guard(&self.in_flight);
            stats.in_flight_batches = in_flight.ids.len();
            stats.in_flight_bytes = in_flight.bytes;
        }
        {
            let held = guard(&self.held);
            stats.held_batches = held.len();
            stats.held_bytes = held.iter().map(|b| b.bytes).sum();
        }
        stats.spool_syncs = self.spool.as_ref().map_or(0, Spool::syncs);
        stats
    }

    /// `Err(Held)` if any batch is held.
    fn held_result(&self) -> Result<(), RecorderError> {
        let held = guard(&self.held);
        let Some(latest) = held.iter().rev().find_map(|b| b.error.clone()) else {
            return Ok(());
        };
        Err(RecorderError::Held {
            batches: held.len(),
            bytes: held.iter().map(|b| b.bytes).sum(),
            error: latest,
        })
    }

    /// Waits until none of the uploads `ids` is running.
    async fn wait_for(&self, ids: &[u64]) {
        loop {
            let progress = self.progress.notified();
            {
                let in_flight = guard(&self.in_flight);
                if ids.iter().all(|id| !in_flight.ids.contains(id)) {
                    return;
                }
            }
            progress.await;
        }
    }

    /// Waits until no upload is running.
    async fn wait_idle(&self) {
        loop {
            let progress = self.progress.notified();
            if guard(&self.in_flight).ids.is_empty() {
                return;
            }
            progress.await;
        }
    }

    /// Uploads a batch in the background.
    fn spawn_upload(self: &Arc<Self>, batch: Batch, reason: FlushReason) {
        let id = self.begin_upload(&batch);
        let inner = self.clone();
        tokio::spawn(async move {
            // A failure is held and reported by flush_due / close.
            let _ = inner.run_upload(id, batch, reason).await;
        });
    }

    fn begin_upload(&self, batch: &Batch) -> u64 {
        let mut in_flight = guard(&self.in_flight);
        let id = in_flight.next;
        in_flight.next += 1;
        in_flight.ids.insert(id);
        in_flight.bytes += batch.bytes;
        id
    }

    /// Uploads one batch with retries, awaited.
    async fn upload(
        &self,
        batch: Batch,
        reason: FlushReason,
    ) -> Result<(), std::sync::Arc<FlushError>> {
        let id = self.begin_upload(&batch);
        self.run_upload(id, batch, reason).await
    }

    /// Uploads one batch (counted in flight as `id`) with retries. On success retires it
    /// from the spool; on failure holds it. Either way it is no longer in flight afterwards.
    async fn run_upload(
        &self,
        id: u64,
        mut batch: Batch,
        reason: FlushReason,
    ) -> Result<(), Arc<FlushError>> {
        let bytes = batch.bytes;
        // A panic in the upload (a dependency's bug) must neither drop the batch nor leave it
        // counted in flight forever (close would wait for it): it is held like a failure.
        let attempt = std::panic::AssertUnwindSafe(self.try_upload(&batch, reason));
        let outcome = match futures::FutureExt::catch_unwind(attempt).await {
            Ok(outcome) => outcome,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".to_owned());
                Err(FlushError::Panicked(message))
            }
        };
        if outcome.is_ok()
            && let (Some(spool), Contents::Spool { id, .. }) = (&self.spool, &batch.contents)
            && let Err(error) = spool.retire(*id).await
        {
            // The batch is stored; a batch left in the log is replayed as an identical no-op.
            tracing::warn!(%error, batch = id.0, "could not retire a flushed spool batch");
        }
        let result = match outcome {
            Ok(()) => {
                batch.owner.fetch_sub(batch.bytes, Ordering::Relaxed);
                self.used.fetch_sub(batch.bytes, Ordering::Relaxed);
                let mut stats = guard(&self.stats);
                let counts = stats.flushes.entry(reason).or_default();
                counts.batches += 1;
                counts.chunks += batch.count as u64;
                counts.bytes += batch.bytes as u64;
                Ok(())
            }
            Err(error) => {
                let error = Arc::new(error);
                self.rules.failed(&mut batch, error.clone(), Instant::now());
                tracing::warn!(
                    uid = %batch.key.0,
                    conversation = %batch.key.1,
                    reason = reason.as_str(),
                    chunks = batch.count,
                    bytes = batch.bytes,
                    failures = batch.failures,
                    temporary = error.is_temporary(),
                    %error,
                    "batch upload failed; batch held{}",
                    if error.is_temporary() { " for retry" } else { " (permanent: not retried until retry_held or the next open)" }
                );
                guard(&self.held).push(batch);
                Err(error)
            }
        };
        {
            let mut in_flight = guard(&self.in_flight);
            in_flight.ids.remove(&id);
            in_flight.bytes = in_flight.bytes.saturating_sub(bytes);
        }
        self.progress.notify_waiters();
        result
    }

    async fn try_upload(&self, batch: &Batch, reason: FlushReason) -> Result<(), FlushError> {
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
                    guard(&self.stats).failed_attempts += 1;
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
        tracing::info!(
            %uid,
            %conversation,
            reason = reason.as_str(),
            chunks = chunks.len(),
            bytes = batch.bytes,
            audio_ms = self.rules.audio_ms(batch),
            attempts = attempt,
            objects_written = report.objects_written,
            paths = ?report.paths,
            "batch flushed"
        );
        Ok(())
    }

    async fn batch_chunks(&self, batch: &Batch) -> Result<Vec<Chunk>, FlushError> {
        match (&self.spool, &batch.contents) {
            (Some(spool), Contents::Spool { id, chunks }) => {
                let (spool, id, chunks) = (spool.clone(), *id, chunks.clone());
                let chunks = blocking(move || spool.read_batch(id, &chunks)).await?;
                Ok(chunks
                    .into_iter()
                    .map(|c| Chunk::new(c.timestamp, c.pcm))
                    .collect())
            }
            (_, Contents::Memory(chunks)) => Ok(chunks.clone()),
            (None, Contents::Spool { .. }) => Err(FlushError::Spool(SpoolError::Closed)),
        }
    }
}
