//! A durable local spool: one append log shared by every stream, with group commit.
//!
//! The recorder acknowledges a chunk only after [`Spool::append`] returned, i.e. after the
//! chunk's record reached the disk (`fdatasync`). Appends of all streams go to one committer
//! thread: those that arrive while a write and fsync are running are written together in the
//! next round and acknowledged by one fsync, so fsyncs per second depend on the disk and
//! [`SpoolOptions::commit_interval`], not on the number of streams, and no stream's append
//! waits on a lock another stream holds across I/O.
//!
//! A batch is a sequence of chunks of one conversation. Its records are interleaved with
//! other batches' in the log; the caller keeps each chunk's [`ChunkLocation`] and reads the
//! batch back with [`Spool::read_batch`] when it uploads it. Once the object store confirmed
//! the batch, [`Spool::retire`] writes a `retire` record; a segment file is deleted once every
//! batch with records in it is retired (and that `retire` is durable). After a crash,
//! [`Spool::open`] scans the segments oldest first, cuts a torn tail, and returns every batch
//! opened and not retired, for replay.
//!
//! Log segment files `{id:020}.log` (all integers little-endian):
//!
//! ```text
//! file    := magic "CVSPOOL2" record*
//! record  := len: u32 | crc32c(payload): u32 | payload[len]
//! payload := 0x01 open   | batch u64 | header
//!          | 0x02 chunk  | batch u64 | timestamp_ms u64 | pcm bytes (rest of the payload)
//!          | 0x03 retire | batch u64
//! header  := version u8 (=1) | level u8 (0 none, 1 standard, 2 enhanced, 3 e2ee)
//!            | uid_len u16 | uid | conv_len u16 | conv
//! ```
//!
//! A batch's `open` record is written in the same round as its first chunk. Batch ids
//! increase and are never reused while a record naming them exists. Recovery rules:
//!
//! - a record that runs past the end of the newest segment, a record whose checksum fails and
//!   that ends exactly at its end, and a zero-filled tail are a *torn tail*: the write that
//!   made it never returned, so it held no acknowledged chunk; it is cut (and the cut
//!   fsync'd). A segment is complete before the next one is created, so in an older segment
//!   the same damage is corruption;
//! - a bad record with more data after it, a record whose checksum holds but whose content is
//!   invalid, or chunk timestamps of one batch that do not increase are
//!   [`SpoolError::Corrupt`]: acknowledged data may follow, so nothing is cut and nothing is
//!   guessed;
//! - a `chunk` of a batch without an `open` belongs to a retired batch (its `open` was in a
//!   segment deleted after its `retire` became durable) and is skipped; a batch opened
//!   without any durable chunk held nothing.
//!
//! Segments of format 1 (`{id:020}.seg`, one file per batch, written before the log existed)
//! are moved into the log by [`Spool::open`] and then deleted.
//!
//! One process at a time: [`Spool::open`] takes an exclusive lock on `spool.lock` in the
//! directory (released by the OS when the process dies, also on `kill -9`).

mod commit;
mod legacy;
mod log;
mod record;

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, BufReader};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chunk_format::Timestamp;
use chunk_store::{ConversationId, UserId};
use tokio::sync::oneshot;

use crate::level::ProtectionLevel;
use commit::{Committer, Request, Shared, create_segment};

pub use record::MAX_RECORD;

/// The lock file of a spool directory.
pub const LOCK_FILE: &str = "spool.lock";
/// Bytes a chunk record takes on disk beyond its PCM.
pub const RECORD_OVERHEAD: usize = record::RECORD_HEADER + log::CHUNK_PREFIX;

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file operation failed.
    #[error("spool {path}: {op}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// Another process (or another [`Spool`] in this one) holds the directory's lock.
    #[error("spool {path} is locked by another process")]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A chunk (or an id in a batch header) is larger than a record may hold.
    #[error("spool record of {len} bytes is larger than the limit {max}")]
    TooLarge {
        /// Payload (or id) length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A write to the log failed; the spool refuses all further writes and reads (reopen it,
    /// which recovers the log).
    #[error("spool {path} is failed after a write error; reopen it to recover")]
    Failed {
        /// The segment whose write failed.
        path: PathBuf,
    },
    /// The spool is shutting down.
    #[error("the spool is closed")]
    Closed,
    /// The log holds data that no crash can produce (not a torn tail): nothing was cut.
    #[error("spool segment {path} at offset {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
}

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> SpoolError + 'a {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        op,
        source,
    }
}

fn sync_dir(dir: &Path) -> Result<(), SpoolError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir, "fsync directory"))
}

/// Which conversation a batch holds: user, conversation and (if the caller gave it) level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchHeader {
    /// The user.
    pub uid: UserId,
    /// The conversation.
    pub conversation: ConversationId,
    /// The level the caller passed with the chunks, if any.
    pub level: Option<ProtectionLevel>,
}

/// A batch's id in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BatchId(pub u64);

/// Where one durable chunk record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLocation {
    /// The log segment.
    pub segment: u64,
    /// The record's offset in it.
    pub offset: u64,
    /// The record's length, framing included.
    pub len: u32,
    /// The chunk's start.
    pub timestamp: Timestamp,
}

/// A batch found in the log by [`Spool::open`]: opened, holding chunks, not retired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveredBatch {
    /// Its id.
    pub id: BatchId,
    /// Whose batch it is.
    pub header: BatchHeader,
    /// Its chunks, in order.
    pub chunks: Vec<ChunkLocation>,
    /// PCM bytes of those chunks.
    pub pcm_bytes: u64,
}

/// What [`Spool::open`] found.
#[derive(Debug, Clone, Default)]
pub struct Recovered {
    /// Batches to replay, oldest first.
    pub batches: Vec<RecoveredBatch>,
    /// Log segments scanned.
    pub segments: usize,
    /// Torn tail bytes cut.
    pub cut_bytes: u64,
    /// Format-1 segment files moved into the log.
    pub migrated: usize,
}

/// One chunk read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpooledChunk {
    /// The chunk's start.
    pub timestamp: Timestamp,
    /// Its PCM.
    pub pcm: Vec<u8>,
}

/// How the log commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpoolOptions {
    /// Least time between two fsyncs: appends arriving within it are committed together, so
    /// fsyncs per second stay at or below its inverse (5 ms: 200 per second). An append
    /// arriving after a quiet spell is committed at once.
    pub commit_interval: Duration,
    /// A new segment file starts once the active one reaches this size.
    pub segment_bytes: u64,
}

impl Default for SpoolOptions {
    fn default() -> Self {
        SpoolOptions {
            commit_interval: Duration::from_millis(5),
            segment_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Closes the log when the last handle goes: what is queued is written, then the thread
/// stops and the directory lock is released.
struct Handle {
    dir: PathBuf,
    shared: Arc<Shared>,
    next_batch: AtomicU64,
    thread: Option<std::thread::JoinHandle<()>>,
    _lock: File,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.shut_down();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The spool: a directory holding the group-commit log (see the module docs). Cheap to
/// clone; clones share the log.
#[derive(Clone)]
pub struct Spool {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.handle.dir)
            .finish_non_exhaustive()
    }
}

fn lock_dir(dir: &Path) -> Result<File, SpoolError> {
    fs::create_dir_all(dir).map_err(io_err(dir, "create directory"))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(&lock_path, "open lock file"))?;
    match lock.try_lock() {
        Ok(()) => Ok(lock),
        Err(TryLockError::WouldBlock) => Err(SpoolError::Locked { path: lock_path }),
        Err(TryLockError::Error(source)) => Err(SpoolError::Io {
            path: lock_path,
            op: "lock",
            source,
        }),
    }
}

/// The log segment ids in `dir`, oldest first.
fn segment_ids(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir, "read directory"))? {
        let entry = entry.map_err(io_err(dir, "read directory"))?;
        if let Some(id) = entry.file_name().to_str().and_then(log::segment_id) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// Scans the log of `dir`: the recovery, and per segment where its valid data ends.
fn scan_dir(dir: &Path) -> Result<(log::Recovery, Vec<(u64, log::Scanned)>), SpoolError> {
    let ids = segment_ids(dir)?;
    let mut recovery = log::Recovery::default();
    let mut scanned = Vec::with_capacity(ids.len());
    for (i, &id) in ids.iter().enumerate() {
        let path = log::segment_path(dir, id);
        let file = File::open(&path).map_err(io_err(&path, "open log segment"))?;
        let total = file
            .metadata()
            .map_err(io_err(&path, "stat log segment"))?
            .len();
        let newest = i + 1 == ids.len();
        let result = recovery.scan(id, &path, BufReader::new(file), total, newest)?;
        scanned.push((id, result));
    }
    Ok((recovery, scanned))
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, locks it, and recovers what an earlier
    /// process left: a torn tail is cut (and the cut made durable), format-1 segments are
    /// moved into the log, segments that hold no live batch are deleted, and the live batches
    /// are returned oldest first for replay. Appends go to a new segment. Blocking.
    ///
    /// Fails with [`SpoolError::Locked`] if another spool holds the directory, and with
    /// [`SpoolError::Corrupt`] if the log holds damage that is not a torn tail.
    pub fn open(
        dir: impl Into<PathBuf>,
        options: SpoolOptions,
    ) -> Result<(Spool, Recovered), SpoolError> {
        let dir = dir.into();
        let lock = lock_dir(&dir)?;
        let (recovery, scanned) = scan_dir(&dir)?;
        let mut report = Recovered {
            segments: scanned.len(),
            ..Recovered::default()
        };
        for (id, scan) in &scanned {
            let cut = scan.total - scan.valid_end;
            if cut == 0 {
                continue;
            }
            let path = log::segment_path(&dir, *id);
            tracing::warn!(path = %path.display(), cut_bytes = cut, "cutting a torn tail from the spool log");
            let file = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err(&path, "open log segment for truncation"))?;
            file.set_len(scan.valid_end)
                .and_then(|()| file.sync_all())
                .map_err(io_err(&path, "truncate log segment"))?;
            report.cut_bytes += cut;
        }
        let (mut batches, mut references, mut next_batch) = recovery.finish();
        let active = scanned.last().map_or(0, |(id, _)| id + 1);
        let mut file = create_segment(&dir, active)?;
        let mut len = log::MAGIC.len() as u64;

        // Format-1 segments: rewrite each as a batch of the log, durable before the old file
        // goes.
        let legacy = legacy::find(&dir)?;
        for path in &legacy {
            if let Some(segment) = legacy::read(path)? {
                report.cut_bytes += segment.cut_bytes;
                let id = BatchId(next_batch);
                next_batch += 1;
                let mut bytes = Vec::new();
                log::open_record(&mut bytes, id, &segment.header)?;
                let mut chunks = Vec::with_capacity(segment.chunks.len());
                let mut pcm_bytes = 0;
                for chunk in &segment.chunks {
                    let at = bytes.len();
                    log::chunk_record(&mut bytes, id, chunk.timestamp, &chunk.pcm);
                    chunks.push(ChunkLocation {
                        segment: active,
                        offset: len + at as u64,
                        len: (bytes.len() - at) as u32,
                        timestamp: chunk.timestamp,
                    });
                    pcm_bytes += chunk.pcm.len() as u64;
                }
                let log_path = log::segment_path(&dir, active);
                io::Write::write_all(&mut file, &bytes)
                    .and_then(|()| file.sync_data())
                    .map_err(io_err(&log_path, "append to log"))?;
                len += bytes.len() as u64;
                references.wrote(id, active);
                batches.push(RecoveredBatch {
                    id,
                    header: segment.header,
                    chunks,
                    pcm_bytes,
                });
            }
            fs::remove_file(path).map_err(io_err(path, "delete format-1 segment"))?;
            report.migrated += 1;
        }
        if !legacy.is_empty() {
            sync_dir(&dir)?;
        }

        for (id, _) in &scanned {
            references.refs.entry(*id).or_insert(0);
        }
        references.refs.entry(active).or_insert(0);
        let shared = Arc::new(Shared::new());
        let mut committer = Committer {
            dir: dir.clone(),
            shared: shared.clone(),
            active,
            file,
            len,
            segment_bytes: options.segment_bytes.max(1),
            interval: options.commit_interval,
            references,
        };
        committer.delete_unreferenced()?;
        let thread = std::thread::Builder::new()
            .name("chunkvault-spool".to_owned())
            .spawn(move || committer.run())
            .map_err(io_err(&dir, "start the spool's commit thread"))?;
        report.batches = batches;
        Ok((
            Spool {
                handle: Arc::new(Handle {
                    dir,
                    shared,
                    next_batch: AtomicU64::new(next_batch),
                    thread: Some(thread),
                    _lock: lock,
                }),
            },
            report,
        ))
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.handle.dir
    }

    /// A fresh batch id; the batch exists in the log once its first chunk is appended.
    pub fn new_batch(&self) -> BatchId {
        BatchId(self.handle.next_batch.fetch_add(1, Ordering::Relaxed))
    }

    /// Fails with [`SpoolError::Failed`] once a write to the log failed.
    pub fn check_usable(&self) -> Result<(), SpoolError> {
        match self.handle.shared.failed() {
            Some(path) => Err(SpoolError::Failed { path }),
            None => Ok(()),
        }
    }

    /// Appends one chunk of `batch` (with the batch's `header` for its first chunk). Resolves
    /// once the record is fsync'd, with where it is: from then on the chunk survives a crash.
    /// The record is queued when this is called, so appends of one batch keep their order.
    pub fn append(
        &self,
        batch: BatchId,
        header: Option<&BatchHeader>,
        timestamp: Timestamp,
        pcm: Bytes,
    ) -> impl Future<Output = Result<ChunkLocation, SpoolError>> + Send + 'static {
        let queued = self.queue_append(batch, header, timestamp, pcm);
        async move {
            let reply = queued?;
            match reply.await {
                Ok(Ok(Some(location))) => Ok(location),
                Ok(Ok(None)) | Err(_) => Err(SpoolError::Closed),
                Ok(Err(error)) => Err(error),
            }
        }
    }

    fn queue_append(
        &self,
        batch: BatchId,
        header: Option<&BatchHeader>,
        timestamp: Timestamp,
        pcm: Bytes,
    ) -> Result<oneshot::Receiver<Result<Option<ChunkLocation>, SpoolError>>, SpoolError> {
        self.check_usable()?;
        let len = log::CHUNK_PREFIX + pcm.len();
        if len > MAX_RECORD {
            return Err(SpoolError::TooLarge {
                len,
                max: MAX_RECORD,
            });
        }
        // The PCM is written from the caller's buffer: only the records' heads are new bytes.
        let mut head = Vec::with_capacity(RECORD_OVERHEAD + 128);
        if let Some(header) = header {
            log::open_record(&mut head, batch, header)?;
        }
        let at = head.len();
        log::chunk_record_head(&mut head, batch, timestamp, &pcm);
        let record_len = (head.len() - at + pcm.len()) as u32;
        let (reply, answer) = oneshot::channel();
        self.handle.shared.submit(Request {
            batch,
            head,
            body: pcm,
            chunk: Some((at, record_len, timestamp)),
            retire: false,
            reply,
        });
        Ok(answer)
    }

    /// Retires a batch whose object the store confirmed: resolves once the `retire` record is
    /// durable. Segments that then hold no live batch are deleted.
    pub fn retire(
        &self,
        batch: BatchId,
    ) -> impl Future<Output = Result<(), SpoolError>> + Send + 'static {
        let queued = self.check_usable().map(|()| {
            let mut head = Vec::new();
            log::retire_record(&mut head, batch);
            let (reply, answer) = oneshot::channel();
            self.handle.shared.submit(Request {
                batch,
                head,
                body: Bytes::new(),
                chunk: None,
                retire: true,
                reply,
            });
            answer
        });
        async move {
            match queued?.await {
                Ok(Ok(_)) => Ok(()),
                Err(_) => Err(SpoolError::Closed),
                Ok(Err(error)) => Err(error),
            }
        }
    }

    /// Reads a batch's chunks back, in order. Any damage is [`SpoolError::Corrupt`]. Blocking.
    pub fn read_batch(
        &self,
        batch: BatchId,
        chunks: &[ChunkLocation],
    ) -> Result<Vec<SpooledChunk>, SpoolError> {
        self.check_usable()?;
        let mut out = Vec::with_capacity(chunks.len());
        let mut open: Option<(u64, File)> = None;
        for location in chunks {
            let path = log::segment_path(&self.handle.dir, location.segment);
            let file = match &open {
                Some((segment, file)) if *segment == location.segment => file,
                _ => {
                    let file = File::open(&path).map_err(io_err(&path, "open log segment"))?;
                    &open.insert((location.segment, file)).1
                }
            };
            let mut bytes = vec![0u8; location.len as usize];
            file.read_exact_at(&mut bytes, location.offset)
                .map_err(io_err(&path, "read log segment"))?;
            let corrupt = |reason: &str| SpoolError::Corrupt {
                path: path.clone(),
                offset: location.offset,
                reason: reason.to_owned(),
            };
            let payload = record::unframe(&bytes).ok_or_else(|| corrupt("bad record"))?;
            match log::decode(payload) {
                Some(log::Entry::Chunk(id, timestamp, pcm))
                    if id == batch && timestamp == location.timestamp =>
                {
                    out.push(SpooledChunk {
                        timestamp,
                        pcm: pcm.to_vec(),
                    });
                }
                _ => return Err(corrupt("not the batch's chunk")),
            }
        }
        Ok(out)
    }

    /// fsyncs that acknowledged appends so far.
    pub fn syncs(&self) -> u64 {
        self.handle.shared.syncs.load(Ordering::Relaxed)
    }

    /// Bytes currently on disk in log segments (for metrics).
    pub fn disk_bytes(&self) -> u64 {
        log_bytes(&self.handle.dir)
    }
}

fn log_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_str().and_then(log::segment_id).is_some())
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// What a spool directory holds, read without taking its lock or changing anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolSummary {
    /// Live batches (opened, holding chunks, not retired), format-1 segments included.
    pub batches: usize,
    /// Their chunks.
    pub chunks: usize,
    /// Log segment files.
    pub segments: usize,
    /// Bytes of log segment files.
    pub bytes: u64,
}

/// Reads what the spool in `dir` holds (for operators and tests), without locking it: while
/// a recorder writes, the figures are a moment's view.
pub fn inspect(dir: impl AsRef<Path>) -> Result<SpoolSummary, SpoolError> {
    let dir = dir.as_ref();
    let (recovery, scanned) = scan_dir(dir)?;
    let (batches, _, _) = recovery.finish();
    let mut summary = SpoolSummary {
        batches: batches.len(),
        chunks: batches.iter().map(|b| b.chunks.len()).sum(),
        segments: scanned.len(),
        bytes: log_bytes(dir),
    };
    for path in legacy::find(dir)? {
        if let Some(segment) = legacy::read(&path)? {
            summary.batches += 1;
            summary.chunks += segment.chunks.len();
        }
    }
    Ok(summary)
}

/// Recovers the batches one log segment's bytes hold, as [`Spool::open`] does for the newest
/// segment (a torn tail accepted): a value or a typed error for any input. For tools and the
/// fuzz target.
pub fn scan_segment(bytes: &[u8]) -> Result<Vec<RecoveredBatch>, SpoolError> {
    let mut recovery = log::Recovery::default();
    recovery.scan(0, Path::new("<bytes>"), bytes, bytes.len() as u64, true)?;
    Ok(recovery.finish().0)
}

#[cfg(test)]
mod tests;
