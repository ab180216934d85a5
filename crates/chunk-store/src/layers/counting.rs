//! [`CountingLayer`]: counts backend requests per operation kind, the figures the cost report
//! and the benchmarks use.
//!
//! The layer sits directly above the backend (inside the fault, timeout and retry layers), so
//! every retried attempt that reaches the backend is counted and injected faults are not.
//! What one count means, per kind:
//!
//! - **write**: one per object for fs, memory and single-PUT uploads, counted when the writer
//!   is closed. Backends that upload in parts count what their writer sends: S3 and GCS
//!   (multipart) count `parts + 2` (initiate, each part, complete) once more than one part was
//!   passed down, Azure Blob (block lists) `parts + 1`. An aborted multipart upload counts the
//!   initiate and the parts already sent (the abort request itself is free on every provider).
//!   `create_dir` counts one write.
//! - **list**: one per page. S3 and GCS pages hold 1000 entries, Azure Blob 5000; fs and memory
//!   list in one call. The count is derived from the entries returned (a listing whose size is
//!   an exact multiple of the page size may have needed one more, empty, page).
//! - **read**: one per ranged or whole read request (each GET), including reopenings by the
//!   retry layer.
//! - **stat**: one per metadata request (HEAD).
//! - **delete**: one per object path handed to a deleter (a batch delete request covers many).
//! - **copy**: one per server-side copy (or rename).
//!
//! Class A = write + list + copy; Class B = read + stat; deletes are free on S3 and GCS and
//! reported on their own.

use std::fmt;
use std::ops::Sub;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opendal::raw::oio;
use opendal::raw::*;
use opendal::{Buffer, BytesRange, Capability, Metadata, OperationContext, Result};

/// A snapshot of the operation counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct OpCounts {
    /// Object writes (PUTs, multipart requests, blocks), see the module docs.
    pub write: u64,
    /// List pages.
    pub list: u64,
    /// Read (GET) requests.
    pub read: u64,
    /// Stat (HEAD) requests.
    pub stat: u64,
    /// Objects deleted.
    pub delete: u64,
    /// Server-side copies.
    pub copy: u64,
    /// Bytes returned by reads (whole and ranged), counted where the store hands them back.
    pub read_bytes: u64,
}

impl OpCounts {
    /// Class A operations (the expensive tier): write + list + copy.
    pub fn class_a(&self) -> u64 {
        self.write + self.list + self.copy
    }

    /// Class B operations (the cheap tier): read + stat.
    pub fn class_b(&self) -> u64 {
        self.read + self.stat
    }
}

impl Sub for OpCounts {
    type Output = OpCounts;

    /// The operations between two snapshots (`after - before`), saturating at zero.
    fn sub(self, before: OpCounts) -> OpCounts {
        OpCounts {
            write: self.write.saturating_sub(before.write),
            list: self.list.saturating_sub(before.list),
            read: self.read.saturating_sub(before.read),
            stat: self.stat.saturating_sub(before.stat),
            delete: self.delete.saturating_sub(before.delete),
            copy: self.copy.saturating_sub(before.copy),
            read_bytes: self.read_bytes.saturating_sub(before.read_bytes),
        }
    }
}

impl fmt::Display for OpCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "class A {} (write {}, list {}, copy {}), class B {} (read {}, stat {}), delete {}",
            self.class_a(),
            self.write,
            self.list,
            self.copy,
            self.class_b(),
            self.read,
            self.stat,
            self.delete
        )
    }
}

#[derive(Debug, Default)]
struct Counters {
    write: AtomicU64,
    list: AtomicU64,
    read: AtomicU64,
    stat: AtomicU64,
    delete: AtomicU64,
    copy: AtomicU64,
    read_bytes: AtomicU64,
}

fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// Shared operation counters: cheap to clone, every clone sees the same counts.
#[derive(Debug, Clone, Default)]
pub struct OpCounter {
    counters: Arc<Counters>,
}

impl OpCounter {
    /// Makes a counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> OpCounts {
        let c = &self.counters;
        OpCounts {
            write: c.write.load(Ordering::Relaxed),
            list: c.list.load(Ordering::Relaxed),
            read: c.read.load(Ordering::Relaxed),
            stat: c.stat.load(Ordering::Relaxed),
            delete: c.delete.load(Ordering::Relaxed),
            copy: c.copy.load(Ordering::Relaxed),
            read_bytes: c.read_bytes.load(Ordering::Relaxed),
        }
    }

    /// Adds `n` bytes read (called by the store when a read returns).
    pub(crate) fn add_read_bytes(&self, n: u64) {
        add(&self.counters.read_bytes, n);
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        let c = &self.counters;
        for counter in [
            &c.write,
            &c.list,
            &c.read,
            &c.stat,
            &c.delete,
            &c.copy,
            &c.read_bytes,
        ] {
            counter.store(0, Ordering::Relaxed);
        }
    }
}

/// How a backend's writer turns the pieces it is given into requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WriteAccounting {
    /// One request per object (fs, memory, and anything not listed below).
    Single,
    /// S3 / GCS multipart: one PUT for a single piece, else initiate + parts + complete.
    Multipart,
    /// Azure block blobs: one PUT for a single piece, else blocks + block list.
    Block,
}

impl WriteAccounting {
    fn for_scheme(scheme: &str) -> Self {
        match scheme {
            "s3" | "gcs" => WriteAccounting::Multipart,
            "azblob" => WriteAccounting::Block,
            _ => WriteAccounting::Single,
        }
    }

    fn on_close(self, parts: u64) -> u64 {
        match self {
            WriteAccounting::Single => 1,
            WriteAccounting::Multipart if parts > 1 => parts + 2,
            WriteAccounting::Block if parts > 1 => parts + 1,
            WriteAccounting::Multipart | WriteAccounting::Block => 1,
        }
    }

    fn on_abort(self, parts: u64) -> u64 {
        match self {
            WriteAccounting::Multipart if parts > 1 => parts,
            WriteAccounting::Block if parts > 1 => parts - 1,
            _ => 0,
        }
    }
}

fn list_page_size(scheme: &str) -> Option<u64> {
    match scheme {
        "s3" | "gcs" => Some(1000),
        "azblob" => Some(5000),
        _ => None,
    }
}

/// The OpenDAL layer that feeds an [`OpCounter`]. See the module docs for what is counted.
#[derive(Debug, Clone)]
pub struct CountingLayer {
    counter: OpCounter,
}

impl CountingLayer {
    /// Makes a layer that adds to `counter`.
    pub fn new(counter: OpCounter) -> Self {
        Self { counter }
    }
}

impl Layer for CountingLayer {
    fn apply_service(&self, inner: Servicer) -> Servicer {
        let scheme = inner.info().scheme();
        Arc::new(CountingService {
            accounting: WriteAccounting::for_scheme(scheme),
            page: list_page_size(scheme),
            counters: self.counter.counters.clone(),
            inner,
        })
    }
}

#[doc(hidden)]
#[derive(Debug)]
pub struct CountingService {
    inner: Servicer,
    counters: Arc<Counters>,
    accounting: WriteAccounting,
    page: Option<u64>,
}

impl Service for CountingService {
    type Reader = CountingReader<oio::Reader>;
    type Writer = CountingWriter<oio::Writer>;
    type Lister = CountingLister<oio::Lister>;
    type Deleter = CountingDeleter<oio::Deleter>;
    type Copier = oio::Copier;
    type Composer = oio::Composer;

    fn info(&self) -> ServiceInfo {
        self.inner.info()
    }

    fn capability(&self) -> Capability {
        self.inner.capability()
    }

    async fn create_dir(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpCreateDir,
    ) -> Result<RpCreateDir> {
        add(&self.counters.write, 1);
        self.inner.create_dir(ctx, path, args).await
    }

    async fn stat(&self, ctx: &OperationContext, path: &str, args: OpStat) -> Result<RpStat> {
        add(&self.counters.stat, 1);
        self.inner.stat(ctx, path, args).await
    }

    fn read(&self, ctx: &OperationContext, path: &str, args: OpRead) -> Result<Self::Reader> {
        let inner = self.inner.read(ctx, path, args)?;
        Ok(CountingReader {
            inner,
            counters: self.counters.clone(),
        })
    }

    fn write(&self, ctx: &OperationContext, path: &str, args: OpWrite) -> Result<Self::Writer> {
        let inner = self.inner.write(ctx, path, args)?;
        Ok(CountingWriter {
            inner,
            counters: self.counters.clone(),
            accounting: self.accounting,
            parts: 0,
            settled: false,
        })
    }

    fn delete(&self, ctx: &OperationContext) -> Result<Self::Deleter> {
        let inner = self.inner.delete(ctx)?;
        Ok(CountingDeleter {
            inner,
            counters: self.counters.clone(),
        })
    }

    fn list(&self, ctx: &OperationContext, path: &str, args: OpList) -> Result<Self::Lister> {
        let inner = self.inner.list(ctx, path, args)?;
        Ok(CountingLister {
            inner,
            counters: self.counters.clone(),
            page: self.page,
            seen: 0,
            pages: 0,
        })
    }

    fn copy(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpCopy,
    ) -> Result<Self::Copier> {
        add(&self.counters.copy, 1);
        self.inner.copy(ctx, from, to, args)
    }

    fn compose(&self, ctx: &OperationContext, to: &str, args: OpCompose) -> Result<Self::Composer> {
        self.inner.compose(ctx, to, args)
    }

    async fn rename(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpRename,
    ) -> Result<RpRename> {
        add(&self.counters.copy, 1);
        self.inner.rename(ctx, from, to, args).await
    }

    async fn restore(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpRestore,
    ) -> Result<RpRestore> {
        self.inner.restore(ctx, path, args).await
    }

    async fn presign(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpPresign,
    ) -> Result<RpPresign> {
        self.inner.presign(ctx, path, args).await
    }
}

#[doc(hidden)]
pub struct CountingReader<R> {
    inner: R,
    counters: Arc<Counters>,
}

impl<R: oio::Read> oio::Read for CountingReader<R> {
    async fn open(&self, range: BytesRange) -> Result<(RpRead, Box<dyn oio::ReadStreamDyn>)> {
        add(&self.counters.read, 1);
        self.inner.open(range).await
    }

    async fn read(&self, range: BytesRange) -> Result<(RpRead, Buffer)> {
        add(&self.counters.read, 1);
        self.inner.read(range).await
    }
}

#[doc(hidden)]
pub struct CountingWriter<W> {
    inner: W,
    counters: Arc<Counters>,
    accounting: WriteAccounting,
    parts: u64,
    settled: bool,
}

impl<W: oio::Write> oio::Write for CountingWriter<W> {
    async fn write(&mut self, bs: Buffer) -> Result<()> {
        self.parts += 1;
        self.inner.write(bs).await
    }

    async fn copy_from(&mut self, path: &str, args: OpRead, range: BytesRange) -> Result<()> {
        self.parts += 1;
        self.inner.copy_from(path, args, range).await
    }

    async fn close(&mut self) -> Result<Metadata> {
        if !self.settled {
            self.settled = true;
            add(&self.counters.write, self.accounting.on_close(self.parts));
        }
        self.inner.close().await
    }

    async fn abort(&mut self) -> Result<()> {
        if !self.settled {
            self.settled = true;
            add(&self.counters.write, self.accounting.on_abort(self.parts));
        }
        self.inner.abort().await
    }
}

#[doc(hidden)]
pub struct CountingLister<L> {
    inner: L,
    counters: Arc<Counters>,
    page: Option<u64>,
    seen: u64,
    pages: u64,
}

impl<L: oio::List> oio::List for CountingLister<L> {
    async fn next(&mut self) -> Result<Option<oio::Entry>> {
        // The page holding entry number `seen` (0-based) is the one this call may fetch.
        let needed = match self.page {
            Some(page) => self.seen / page + 1,
            None => 1,
        };
        if needed > self.pages {
            add(&self.counters.list, needed - self.pages);
            self.pages = needed;
        }
        let entry = self.inner.next().await?;
        if entry.is_some() {
            self.seen += 1;
        }
        Ok(entry)
    }
}

#[doc(hidden)]
pub struct CountingDeleter<D> {
    inner: D,
    counters: Arc<Counters>,
}

impl<D: oio::Delete> oio::Delete for CountingDeleter<D> {
    async fn delete(&mut self, path: &str, args: OpDelete) -> Result<()> {
        add(&self.counters.delete, 1);
        self.inner.delete(path, args).await
    }

    async fn close(&mut self) -> Result<()> {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_accounting_matches_the_backend_writers() {
        assert_eq!(WriteAccounting::for_scheme("fs").on_close(7), 1);
        assert_eq!(WriteAccounting::for_scheme("memory").on_close(0), 1);
        let s3 = WriteAccounting::for_scheme("s3");
        assert_eq!(s3.on_close(0), 1, "empty object: one PUT");
        assert_eq!(s3.on_close(1), 1, "one piece: single PUT");
        assert_eq!(s3.on_close(3), 5, "initiate + 3 parts + complete");
        assert_eq!(s3.on_abort(1), 0, "nothing was sent");
        assert_eq!(
            s3.on_abort(3),
            3,
            "initiate + 2 parts sent before the abort"
        );
        let az = WriteAccounting::for_scheme("azblob");
        assert_eq!(az.on_close(3), 4);
        assert_eq!(az.on_abort(3), 2);
    }

    #[test]
    fn counts_subtract_and_classify() {
        let before = OpCounts {
            write: 1,
            list: 1,
            read: 1,
            stat: 0,
            delete: 0,
            copy: 0,
            read_bytes: 10,
        };
        let after = OpCounts {
            write: 4,
            list: 2,
            read: 5,
            stat: 2,
            delete: 3,
            copy: 1,
            read_bytes: 110,
        };
        let diff = after - before;
        assert_eq!(diff.read_bytes, 100);
        assert_eq!(diff.class_a(), 3 + 1 + 1);
        assert_eq!(diff.class_b(), 4 + 2);
        assert_eq!(diff.delete, 3);
        assert_eq!((before - after), OpCounts::default());
    }

    #[test]
    fn counter_snapshots_and_resets() {
        let counter = OpCounter::new();
        add(&counter.counters.read, 2);
        let clone = counter.clone();
        assert_eq!(clone.snapshot().read, 2);
        clone.reset();
        assert_eq!(counter.snapshot(), OpCounts::default());
    }
}
