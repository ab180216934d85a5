//! The group committer: one thread that owns the log's active segment. Appends that arrive
//! while a write and fsync are running queue up, and the next round writes all of them and
//! acknowledges them with one fsync.

use std::fs::{self, File, OpenOptions};
use std::io::{IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::log::{MAGIC, References, segment_path};
use super::{BatchId, ChunkLocation, SpoolError, io_err, sync_dir};

/// One append: framed records to write in order, and what to answer.
pub(super) struct Request {
    /// The batch the records belong to.
    pub(super) batch: BatchId,
    /// The framed records, up to the chunk's PCM.
    pub(super) head: Vec<u8>,
    /// The chunk's PCM, which ends the last record (empty for a retire).
    pub(super) body: bytes::Bytes,
    /// The chunk record, if any: its offset in `head`, whole length and timestamp.
    pub(super) chunk: Option<(usize, u32, chunk_format::Timestamp)>,
    /// Whether this retires the batch (its segments may go once the record is durable).
    pub(super) retire: bool,
    pub(super) reply: oneshot::Sender<Result<Option<ChunkLocation>, SpoolError>>,
}

#[derive(Default)]
struct Queue {
    requests: Vec<Request>,
    shutdown: bool,
}

/// What the committer thread and the spool's handles share.
pub(super) struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// fsyncs that acknowledged appends.
    pub(super) syncs: AtomicU64,
    /// Set after a write that could not be completed; every later append is refused.
    pub(super) failed: Mutex<Option<PathBuf>>,
}

fn guard<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    pub(super) fn new() -> Shared {
        Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            syncs: AtomicU64::new(0),
            failed: Mutex::new(None),
        }
    }

    /// Queues a request for the next round.
    pub(super) fn submit(&self, request: Request) {
        let mut queue = guard(&self.queue);
        if queue.shutdown {
            let _ = request.reply.send(Err(SpoolError::Closed));
            return;
        }
        queue.requests.push(request);
        drop(queue);
        self.wake.notify_one();
    }

    /// Asks the thread to write what is queued and stop.
    pub(super) fn shut_down(&self) {
        guard(&self.queue).shutdown = true;
        self.wake.notify_one();
    }

    pub(super) fn failed(&self) -> Option<PathBuf> {
        guard(&self.failed).clone()
    }

    /// Waits for requests; `None` once shut down with nothing left.
    fn take(&self) -> Option<Vec<Request>> {
        let mut queue = guard(&self.queue);
        loop {
            if !queue.requests.is_empty() {
                return Some(std::mem::take(&mut queue.requests));
            }
            if queue.shutdown {
                return None;
            }
            queue = self
                .wake
                .wait(queue)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Takes whatever else queued up, without waiting.
    fn take_more(&self, into: &mut Vec<Request>) {
        into.append(&mut guard(&self.queue).requests);
    }
}

/// The active segment and what the committer knows about the log.
pub(super) struct Committer {
    pub(super) dir: PathBuf,
    pub(super) shared: Arc<Shared>,
    pub(super) active: u64,
    pub(super) file: File,
    pub(super) len: u64,
    /// Rotate to a new segment once the active one is this long.
    pub(super) segment_bytes: u64,
    /// Least time between two fsyncs.
    pub(super) interval: Duration,
    /// What keeps each segment.
    pub(super) references: References,
}

/// Creates log segment `id`, durable (file and directory entry) on return.
pub(super) fn create_segment(dir: &Path, id: u64) -> Result<File, SpoolError> {
    let path = segment_path(dir, id);
    let mut file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(io_err(&path, "create log segment"))?;
    file.write_all(MAGIC)
        .and_then(|()| file.sync_all())
        .map_err(io_err(&path, "write log segment magic"))?;
    sync_dir(dir)?;
    Ok(file)
}

impl Committer {
    /// Runs rounds until the spool is dropped.
    pub(super) fn run(mut self) {
        let mut last_sync: Option<Instant> = None;
        while let Some(mut group) = self.shared.take() {
            // Hold the round until the interval since the last fsync passed, gathering what
            // arrives meanwhile: fsyncs per second stay bounded whatever the load.
            if let Some(last) = last_sync {
                let next = last + self.interval;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                    self.shared.take_more(&mut group);
                }
            }
            last_sync = Some(Instant::now());
            self.round(group);
        }
    }

    fn round(&mut self, group: Vec<Request>) {
        if let Some(path) = self.shared.failed() {
            for request in group {
                let _ = request
                    .reply
                    .send(Err(SpoolError::Failed { path: path.clone() }));
            }
            return;
        }
        if self.len >= self.segment_bytes
            && let Err(error) = self.rotate()
        {
            self.fail(&error);
            for request in group {
                let _ = request.reply.send(Err(SpoolError::Failed {
                    path: segment_path(&self.dir, self.active + 1),
                }));
            }
            return;
        }
        let mut answers = Vec::with_capacity(group.len());
        let mut written_len = 0u64;
        for request in &group {
            let start = self.len + written_len;
            written_len += (request.head.len() + request.body.len()) as u64;
            if !request.retire {
                self.references.wrote(request.batch, self.active);
            }
            answers.push(request.chunk.map(|(at, len, timestamp)| ChunkLocation {
                segment: self.active,
                offset: start + at as u64,
                len,
                timestamp,
            }));
        }
        let path = segment_path(&self.dir, self.active);
        let mut slices: Vec<IoSlice<'_>> = group
            .iter()
            .flat_map(|r| [IoSlice::new(&r.head), IoSlice::new(&r.body)])
            .filter(|slice| !slice.is_empty())
            .collect();
        let written =
            write_all_vectored(&mut self.file, &mut slices).and_then(|()| self.file.sync_data());
        match written {
            Ok(()) => {
                self.len += written_len;
                self.shared.syncs.fetch_add(1, Ordering::Relaxed);
                // Appends are answered at once; retires once the segments they free are gone.
                let mut retired = Vec::new();
                for (request, answer) in group.into_iter().zip(answers) {
                    if request.retire {
                        self.references.retired(request.batch, self.active);
                        retired.push(request.reply);
                    } else {
                        let _ = request.reply.send(Ok(answer));
                    }
                }
                if !retired.is_empty() {
                    if let Err(error) = self.delete_unreferenced() {
                        // The records are durable; a segment left behind is scanned again at
                        // the next open and deleted then.
                        tracing::warn!(%error, "could not delete a retired spool log segment");
                    }
                    for reply in retired {
                        let _ = reply.send(Ok(None));
                    }
                }
            }
            Err(source) => {
                let error = SpoolError::Io {
                    path: path.clone(),
                    op: "append to log",
                    source,
                };
                tracing::error!(%error, "spool log write failed; the spool stops accepting writes until it is reopened");
                self.fail(&error);
                for request in group {
                    let _ = request
                        .reply
                        .send(Err(SpoolError::Failed { path: path.clone() }));
                }
            }
        }
    }

    fn fail(&self, error: &SpoolError) {
        let path = match error {
            SpoolError::Io { path, .. } => path.clone(),
            _ => segment_path(&self.dir, self.active),
        };
        *guard(&self.shared.failed) = Some(path);
    }

    fn rotate(&mut self) -> Result<(), SpoolError> {
        let next = self.active + 1;
        self.file = create_segment(&self.dir, next)?;
        self.active = next;
        self.len = MAGIC.len() as u64;
        // Counted from the start, so a segment that only ever held `retire` records goes too.
        self.references.refs.entry(next).or_insert(0);
        self.delete_unreferenced()
    }

    /// Deletes every segment but the active one that no live batch has records in.
    pub(super) fn delete_unreferenced(&mut self) -> Result<(), SpoolError> {
        let mut deleted = false;
        // Deleting a segment can release the `retire` segments it pinned: repeat.
        loop {
            let unreferenced = self.references.unreferenced(self.active);
            if unreferenced.is_empty() {
                break;
            }
            for segment in unreferenced {
                let path = segment_path(&self.dir, segment);
                match fs::remove_file(&path) {
                    Ok(()) => deleted = true,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err(&path, "delete log segment")(e)),
                }
                self.references.deleted(segment);
            }
        }
        if deleted {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// Writes every slice, in order (`Write::write_all_vectored` is not stable yet).
fn write_all_vectored(file: &mut File, mut slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "failed to write whole buffer",
                ));
            }
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
