//! [`Store`]: an OpenDAL operator with chunkvault's layers, and its options.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use opendal::Operator;
use opendal::layers::{ConcurrentLimitLayer, RetryLayer, TimeoutLayer};

use crate::durable::FsDirs;
use crate::error::Result;
use crate::layers::{CountingLayer, FaultLayer, OpCounter, OpCounts};
use crate::uri;

/// How a create-only write ([`crate::PutMode::CreateOnly`]) is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CreateOnlyMode {
    /// The backend's own conditional write: `If-None-Match: *` on S3 / GCS / Azure, a checked
    /// commit in memory, and on fs a hard link of the finished staging file to the object's
    /// name, which the kernel refuses when the name exists. Use this on AWS S3, GCS, Azure, fs
    /// and memory. On fs, memory and a server that enforces the condition, of two create-only
    /// writers racing on one path exactly one succeeds.
    #[default]
    Native,
    /// Stat first, fail if the object exists, then write unconditionally. Two writers racing
    /// between the stat and the write can both succeed. For S3 servers that accept
    /// `If-None-Match: *` but do not enforce it (Garage 2.x): URI option `create_only=stat`.
    StatThenWrite,
}

/// Retry policy for temporary backend errors (OpenDAL's `RetryLayer`, exponential backoff).
/// Permanent errors (403, 404, bad request) are never retried.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryOptions {
    /// Retries after the first attempt (0 = no retries). Default 4.
    pub max_times: usize,
    /// First backoff delay. Default 200 ms.
    pub min_delay: Duration,
    /// Longest backoff delay. Default 10 s.
    pub max_delay: Duration,
    /// Backoff growth factor. Default 2.
    pub factor: f32,
    /// Randomize delays so clients retrying together spread out. Default on.
    pub jitter: bool,
}

impl Default for RetryOptions {
    fn default() -> Self {
        Self {
            max_times: 4,
            min_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(10),
            factor: 2.0,
            jitter: true,
        }
    }
}

impl RetryOptions {
    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_times: 0,
            ..Self::default()
        }
    }

    /// Fast retries for tests: `max_times` attempts after the first, 1–10 ms apart.
    pub fn fast(max_times: usize) -> Self {
        Self {
            max_times,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(10),
            factor: 2.0,
            jitter: true,
        }
    }
}

/// Options of a [`Store`]: timeouts, retries, concurrency, create-only enforcement and batch
/// deletes.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreOptions {
    /// Limit on one whole operation that is not streamed (stat, create-only check, …).
    /// Default 60 s.
    pub timeout: Duration,
    /// Limit on one I/O step of a streamed operation (one read, one part written, one list
    /// page). Default 30 s.
    pub io_timeout: Duration,
    /// Retries of temporary errors, applied around the timeouts (a timed-out attempt is
    /// retried).
    pub retry: RetryOptions,
    /// Most backend operations in flight at once through this store (`None`: no limit).
    /// Streaming readers, writers and listers hold a slot until they finish.
    pub concurrency_limit: Option<usize>,
    /// How create-only writes are enforced.
    pub create_only: CreateOnlyMode,
    /// Whether [`Store::delete_many`] and [`Store::purge_prefix`] send many objects per
    /// request where the backend has a batch delete (S3: 1000, GCS: 100, Azure: 256). Off,
    /// every object is one DELETE request: for servers whose batch delete does not work
    /// (fake-gcs-server 1.54 cannot parse the batch requests OpenDAL sends, which real GCS
    /// accepts). URI option `batch_delete=false`. Default on.
    pub batch_delete: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            io_timeout: Duration::from_secs(30),
            retry: RetryOptions::default(),
            concurrency_limit: None,
            create_only: CreateOnlyMode::Native,
            batch_delete: true,
        }
    }
}

pub(crate) struct Inner {
    /// The operator with every store layer.
    pub(crate) op: Operator,
    /// The operator as given, before the store's layers (for [`Store::with_fault_layer`]).
    base: Operator,
    pub(crate) options: StoreOptions,
    pub(crate) counter: OpCounter,
    display: String,
    /// Set on the fs backend: where directories are synced and temp files swept.
    pub(crate) fs_dirs: Option<FsDirs>,
}

/// Object storage for chunkvault: one backend (from a URI or an OpenDAL operator) with retry,
/// timeout, optional concurrency limit and operation counting. Cheap to clone; clones share
/// the backend and the counters.
///
/// Layers, from the caller down: concurrency limit → retry → timeout → (fault, tests only) →
/// counting → backend.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("uri", &self.inner.display)
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Store`] from an operator, with options and (for tests) a fault layer.
#[derive(Debug)]
pub struct StoreBuilder {
    op: Operator,
    options: StoreOptions,
    fault: Option<FaultLayer>,
    counter: OpCounter,
    display: String,
    fs_dirs: Option<FsDirs>,
}

impl StoreBuilder {
    /// Starts from an OpenDAL operator without store layers, with default options.
    pub fn new(op: Operator) -> Self {
        let info = op.info();
        let display = format!("{}://{}{}", info.scheme(), info.name(), info.root());
        // OpenDAL's fs root is canonical; its temp dir is ours unless the URI names another.
        let fs_dirs = (info.scheme() == "fs").then(|| {
            let root = std::path::PathBuf::from(info.root());
            FsDirs {
                temp: root.join(crate::path::FS_TMP_DIR),
                root,
            }
        });
        Self {
            op,
            options: StoreOptions::default(),
            fault: None,
            counter: OpCounter::new(),
            display,
            fs_dirs,
        }
    }

    /// Replaces the options.
    pub fn options(mut self, options: StoreOptions) -> Self {
        self.options = options;
        self
    }

    /// Adds a fault-injection layer, placed inside retry and timeout and outside counting.
    pub fn fault_layer(mut self, fault: FaultLayer) -> Self {
        self.fault = Some(fault);
        self
    }

    /// Makes the store report into `counter` (shared with whoever else holds it).
    pub fn counter(mut self, counter: OpCounter) -> Self {
        self.counter = counter;
        self
    }

    /// The options so far.
    pub fn options_mut(&mut self) -> &mut StoreOptions {
        &mut self.options
    }

    /// Applies the layers and makes the store.
    pub fn build(self) -> Store {
        let base = self.op.clone();
        let mut op = self.op.layer(CountingLayer::new(self.counter.clone()));
        if let Some(fault) = self.fault {
            op = op.layer(fault);
        }
        op = op.layer(
            TimeoutLayer::new()
                .with_timeout(self.options.timeout)
                .with_io_timeout(self.options.io_timeout),
        );
        let retry = self.options.retry;
        if retry.max_times > 0 {
            let mut layer = RetryLayer::new()
                .with_max_times(retry.max_times)
                .with_min_delay(retry.min_delay)
                .with_max_delay(retry.max_delay)
                .with_factor(retry.factor)
                .with_notify(|event: opendal::layers::RetryEvent<'_>| {
                    tracing::warn!(
                        op = ?event.op,
                        attempt = event.attempt,
                        retry_after_ms = event.retry_after.as_millis() as u64,
                        error = %event.err,
                        "retrying temporary store error"
                    );
                });
            if retry.jitter {
                layer = layer.with_jitter();
            }
            op = op.layer(layer);
        }
        if let Some(permits) = self.options.concurrency_limit {
            op = op.layer(ConcurrentLimitLayer::new(permits.max(1)));
        }
        Store {
            inner: Arc::new(Inner {
                op,
                base,
                options: self.options,
                counter: self.counter,
                display: self.display,
                fs_dirs: self.fs_dirs,
            }),
        }
    }
}

impl Store {
    /// Opens the store a URI names, with the options its query gives (see [`crate::uri`] for
    /// every form). A bad URI is a [`crate::StoreError::BadUri`] that lists the accepted forms.
    ///
    /// ```
    /// # tokio_test_block_on(async {
    /// let store = chunk_store::Store::from_uri("memory://")?;
    /// store.put("a/b", &b"hi"[..], chunk_store::PutMode::Overwrite).await?;
    /// assert_eq!(store.read("a/b").await?, &b"hi"[..]);
    /// # Ok::<(), chunk_store::StoreError>(()) }).unwrap();
    /// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    /// # }
    /// ```
    pub fn from_uri(uri: &str) -> Result<Store> {
        Ok(Self::builder_from_uri(uri)?.build())
    }

    /// Parses a URI into a [`StoreBuilder`], so options or a fault layer can be changed before
    /// the store is built.
    pub fn builder_from_uri(uri: &str) -> Result<StoreBuilder> {
        let parsed = uri::parse(uri)?;
        let mut builder = StoreBuilder::new(parsed.op).options(parsed.options);
        builder.display = parsed.display;
        if let (Some(dirs), Some(temp)) = (builder.fs_dirs.as_mut(), parsed.fs_temp_dir) {
            dirs.temp = temp;
        }
        Ok(builder)
    }

    /// Wraps an OpenDAL operator (without store layers) with the given options.
    pub fn from_operator(op: Operator, options: StoreOptions) -> Store {
        StoreBuilder::new(op).options(options).build()
    }

    /// Starts a [`StoreBuilder`] from an operator.
    pub fn builder(op: Operator) -> StoreBuilder {
        StoreBuilder::new(op)
    }

    /// Returns a store over the same backend, options and counters with `fault` added (for
    /// tests that inject errors into a store made elsewhere).
    pub fn with_fault_layer(&self, fault: FaultLayer) -> Store {
        self.rebuild(self.inner.options.clone(), Some(fault))
    }

    /// Returns a store over the same backend and counters with other options.
    pub fn with_options(&self, options: StoreOptions) -> Store {
        self.rebuild(options, None)
    }

    fn rebuild(&self, options: StoreOptions, fault: Option<FaultLayer>) -> Store {
        let mut builder = StoreBuilder::new(self.inner.base.clone())
            .options(options)
            .counter(self.inner.counter.clone());
        builder.display = self.inner.display.clone();
        builder.fault = fault;
        builder.build()
    }

    /// The operation counts so far (see [`crate::layers::counting`] for what is counted).
    pub fn op_counts(&self) -> OpCounts {
        self.inner.counter.snapshot()
    }

    /// Sets the operation counters back to zero.
    pub fn reset_op_counts(&self) {
        self.inner.counter.reset()
    }

    /// The counter itself, to share with another store.
    pub fn op_counter(&self) -> &OpCounter {
        &self.inner.counter
    }

    /// The URI the store was opened with, secrets redacted (for logs and reports).
    pub fn uri_display(&self) -> &str {
        &self.inner.display
    }

    /// The backend scheme: `fs`, `memory`, `s3`, `gcs` or `azblob`.
    pub fn scheme(&self) -> &'static str {
        self.inner.op.info().scheme()
    }

    /// On fs, the canonical root directory (every operation is confined to it, see
    /// [`crate::confine`]); `None` on other backends.
    pub(crate) fn fs_root(&self) -> Option<&std::path::Path> {
        self.inner.fs_dirs.as_ref().map(|dirs| dirs.root.as_path())
    }

    /// On fs, checks that the object `path` is reachable without a link and is a regular file
    /// if it exists (see [`crate::confine`]); returns whether it exists there. `None` on other
    /// backends.
    pub(crate) fn confine_object(&self, path: &str) -> crate::error::Result<Option<bool>> {
        self.fs_root()
            .map(|root| crate::confine::check_object(root, path))
            .transpose()
    }

    /// On fs, checks that every existing directory of `prefix` is a real directory.
    pub(crate) fn confine_prefix(&self, prefix: &str) -> crate::error::Result<()> {
        match self.fs_root() {
            Some(root) => crate::confine::check_prefix(root, prefix),
            None => Ok(()),
        }
    }

    /// The options in force.
    pub fn options(&self) -> &StoreOptions {
        &self.inner.options
    }

    /// The underlying operator, with every store layer.
    pub fn operator(&self) -> &Operator {
        &self.inner.op
    }

    /// The smallest part the backend's multipart upload takes, if it uploads in parts
    /// (S3, GCS: 5 MiB). A streaming writer below this size makes a single PUT.
    pub fn multipart_min_size(&self) -> Option<usize> {
        self.inner.op.info().capability().write_multi_min_size
    }
}
