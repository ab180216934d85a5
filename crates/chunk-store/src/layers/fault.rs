//! [`FaultLayer`]: injects backend errors on a schedule, for tests.
//!
//! Unlike OpenDAL's `ChaosLayer` (reads only), this layer can fail writes, the close of a
//! streaming writer, listing, reads, stats and deletes, with temporary errors (which the retry
//! layer retries), permanent ones (which it must not), or "lost" deletes and truncated
//! listings that report success. A fault is injected *before* the call
//! reaches the backend, so the backend's state is untouched by a failed call.
//!
//! The store puts this layer inside its retry and timeout layers and outside the counting
//! layer: [`FaultLayer::calls`] counts every attempt (retries included), and injected faults
//! are not counted as backend operations.
//!
//! ```
//! use chunk_store::layers::{FaultKind, FaultLayer, FaultOp, FaultPlan, FaultRule, FaultSchedule};
//!
//! // The first close of any writer fails with a temporary error; later ones pass.
//! let plan = FaultPlan::new().rule(FaultRule::new(
//!     FaultOp::Close,
//!     FaultKind::Temporary,
//!     FaultSchedule::FirstN(1),
//! ));
//! let layer = FaultLayer::new(plan);
//! assert_eq!(layer.calls(FaultOp::Close), 0);
//! ```

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use opendal::raw::oio;
use opendal::raw::*;
use opendal::{
    Buffer, BytesRange, Capability, Error, ErrorKind, Metadata, OperationContext, Result,
};

/// The operation a fault rule applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultOp {
    /// A piece of data handed to a backend writer. Buffering backends (S3: 5 MiB parts) only
    /// pass data down when a part is full, so small objects see no `Write` call, only `Close`.
    Write,
    /// The close of a writer: the commit (single PUT, multipart complete, fs rename).
    Close,
    /// One step of a listing (each call for the next entry).
    List,
    /// A read request (whole or ranged).
    Read,
    /// One path handed to a deleter.
    Delete,
    /// A metadata request.
    Stat,
}

impl FaultOp {
    const ALL: [FaultOp; 6] = [
        FaultOp::Write,
        FaultOp::Close,
        FaultOp::List,
        FaultOp::Read,
        FaultOp::Delete,
        FaultOp::Stat,
    ];

    fn index(self) -> usize {
        match self {
            FaultOp::Write => 0,
            FaultOp::Close => 1,
            FaultOp::List => 2,
            FaultOp::Read => 3,
            FaultOp::Delete => 4,
            FaultOp::Stat => 5,
        }
    }

    fn operation(self) -> &'static str {
        match self {
            FaultOp::Write => "Writer::write",
            FaultOp::Close => "Writer::close",
            FaultOp::List => "Lister::next",
            FaultOp::Read => "Reader::read",
            FaultOp::Delete => "Deleter::delete",
            FaultOp::Stat => "stat",
        }
    }
}

impl fmt::Display for FaultOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.operation())
    }
}

/// The error a fault produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// An `Unexpected` error marked temporary (like a 503 or a dropped connection): retried.
    Temporary,
    /// A `PermissionDenied` error with permanent status (like a 403): never retried.
    Permanent,
    /// The call reports success without reaching the backend: on `Delete`, a delete the
    /// backend acknowledged but lost; on `List`, a listing that ends early. On other
    /// operations it is injected as [`FaultKind::Permanent`].
    Lost,
}

/// What a checked call should do.
enum Verdict {
    /// Forward to the backend.
    Pass,
    /// Report success without forwarding.
    Skip,
}

/// When a rule fires, counted over the calls that match it (its op and path prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultSchedule {
    /// Every matching call fails.
    Always,
    /// The first `n` matching calls fail; later ones pass.
    FirstN(u64),
    /// The first `n` matching calls pass; every later one fails.
    AfterN(u64),
}

impl FaultSchedule {
    fn fires(self, index: u64) -> bool {
        match self {
            FaultSchedule::Always => true,
            FaultSchedule::FirstN(n) => index < n,
            FaultSchedule::AfterN(n) => index >= n,
        }
    }
}

/// One rule of a [`FaultPlan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRule {
    /// The operation it applies to.
    pub op: FaultOp,
    /// The error it injects.
    pub kind: FaultKind,
    /// When it fires.
    pub schedule: FaultSchedule,
    /// Only paths starting with this prefix match (all paths when `None`).
    pub path_prefix: Option<String>,
}

impl FaultRule {
    /// Makes a rule that applies to every path.
    pub fn new(op: FaultOp, kind: FaultKind, schedule: FaultSchedule) -> Self {
        Self {
            op,
            kind,
            schedule,
            path_prefix: None,
        }
    }

    /// Restricts the rule to paths starting with `prefix`.
    pub fn under(mut self, prefix: impl Into<String>) -> Self {
        self.path_prefix = Some(prefix.into());
        self
    }
}

/// A list of fault rules. Each rule counts the calls that match it; the first rule that fires
/// decides the error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FaultPlan {
    /// The rules, in order.
    pub rules: Vec<FaultRule>,
}

impl FaultPlan {
    /// An empty plan: nothing fails.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule.
    pub fn rule(mut self, rule: FaultRule) -> Self {
        self.rules.push(rule);
        self
    }
}

#[derive(Debug)]
struct FaultState {
    rules: Vec<(FaultRule, AtomicU64)>,
    calls: [AtomicU64; 6],
    injected: [AtomicU64; 6],
}

impl FaultState {
    /// Like [`FaultState::check`], but a [`FaultKind::Lost`] fault skips the call.
    fn verdict(&self, op: FaultOp, path: &str) -> Result<Verdict> {
        match self.decide(op, path) {
            None => Ok(Verdict::Pass),
            Some(FaultKind::Lost) if matches!(op, FaultOp::Delete | FaultOp::List) => {
                Ok(Verdict::Skip)
            }
            Some(kind) => Err(fault_error(kind, op, path)),
        }
    }

    /// Fails the call if a rule fires (a `Lost` fault here is permanent).
    fn check(&self, op: FaultOp, path: &str) -> Result<()> {
        match self.decide(op, path) {
            None => Ok(()),
            Some(kind) => Err(fault_error(kind, op, path)),
        }
    }

    /// Counts the call and returns the kind of the first rule that fires.
    fn decide(&self, op: FaultOp, path: &str) -> Option<FaultKind> {
        self.calls[op.index()].fetch_add(1, Ordering::Relaxed);
        let mut fired = None;
        for (rule, seen) in &self.rules {
            let matches = rule.op == op
                && rule
                    .path_prefix
                    .as_deref()
                    .is_none_or(|prefix| path.starts_with(prefix));
            if !matches {
                continue;
            }
            let index = seen.fetch_add(1, Ordering::Relaxed);
            if fired.is_none() && rule.schedule.fires(index) {
                fired = Some(rule.kind);
            }
        }
        if fired.is_some() {
            self.injected[op.index()].fetch_add(1, Ordering::Relaxed);
        }
        fired
    }
}

fn fault_error(kind: FaultKind, op: FaultOp, path: &str) -> Error {
    let err = match kind {
        FaultKind::Temporary => {
            Error::new(ErrorKind::Unexpected, "injected temporary fault").set_temporary()
        }
        FaultKind::Permanent | FaultKind::Lost => Error::new(
            ErrorKind::PermissionDenied,
            "injected permanent fault (like a 403)",
        ),
    };
    err.with_operation(op.operation())
        .with_context("path", path)
}

/// The fault-injection layer. Clones share their plan and counters, so a test keeps one clone
/// to read [`FaultLayer::calls`] after handing another to the store.
#[derive(Debug, Clone)]
pub struct FaultLayer {
    state: Arc<FaultState>,
}

impl FaultLayer {
    /// Makes a layer that follows `plan`.
    pub fn new(plan: FaultPlan) -> Self {
        Self {
            state: Arc::new(FaultState {
                rules: plan
                    .rules
                    .into_iter()
                    .map(|rule| (rule, AtomicU64::new(0)))
                    .collect(),
                calls: Default::default(),
                injected: Default::default(),
            }),
        }
    }

    /// How many calls of `op` reached this layer (attempts, retries included).
    pub fn calls(&self, op: FaultOp) -> u64 {
        self.state.calls[op.index()].load(Ordering::Relaxed)
    }

    /// How many faults of `op` this layer injected.
    pub fn injected(&self, op: FaultOp) -> u64 {
        self.state.injected[op.index()].load(Ordering::Relaxed)
    }

    /// Total faults injected over every op.
    pub fn injected_total(&self) -> u64 {
        FaultOp::ALL.iter().map(|&op| self.injected(op)).sum()
    }
}

impl Layer for FaultLayer {
    fn apply_service(&self, inner: Servicer) -> Servicer {
        Arc::new(FaultService {
            inner,
            state: self.state.clone(),
        })
    }
}

#[doc(hidden)]
#[derive(Debug)]
pub struct FaultService {
    inner: Servicer,
    state: Arc<FaultState>,
}

impl Service for FaultService {
    type Reader = FaultWrapper<oio::Reader>;
    type Writer = FaultWrapper<oio::Writer>;
    type Lister = FaultWrapper<oio::Lister>;
    type Deleter = FaultWrapper<oio::Deleter>;
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
        self.inner.create_dir(ctx, path, args).await
    }

    async fn stat(&self, ctx: &OperationContext, path: &str, args: OpStat) -> Result<RpStat> {
        self.state.check(FaultOp::Stat, path)?;
        self.inner.stat(ctx, path, args).await
    }

    fn read(&self, ctx: &OperationContext, path: &str, args: OpRead) -> Result<Self::Reader> {
        Ok(self.wrap(self.inner.read(ctx, path, args)?, path))
    }

    fn write(&self, ctx: &OperationContext, path: &str, args: OpWrite) -> Result<Self::Writer> {
        Ok(self.wrap(self.inner.write(ctx, path, args)?, path))
    }

    fn delete(&self, ctx: &OperationContext) -> Result<Self::Deleter> {
        Ok(self.wrap(self.inner.delete(ctx)?, ""))
    }

    fn list(&self, ctx: &OperationContext, path: &str, args: OpList) -> Result<Self::Lister> {
        Ok(self.wrap(self.inner.list(ctx, path, args)?, path))
    }

    fn copy(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpCopy,
    ) -> Result<Self::Copier> {
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

impl FaultService {
    fn wrap<T>(&self, inner: T, path: &str) -> FaultWrapper<T> {
        FaultWrapper {
            inner,
            state: self.state.clone(),
            path: path.to_owned(),
        }
    }
}

#[doc(hidden)]
pub struct FaultWrapper<T> {
    inner: T,
    state: Arc<FaultState>,
    path: String,
}

impl<R: oio::Read> oio::Read for FaultWrapper<R> {
    async fn open(&self, range: BytesRange) -> Result<(RpRead, Box<dyn oio::ReadStreamDyn>)> {
        self.state.check(FaultOp::Read, &self.path)?;
        self.inner.open(range).await
    }

    async fn read(&self, range: BytesRange) -> Result<(RpRead, Buffer)> {
        self.state.check(FaultOp::Read, &self.path)?;
        self.inner.read(range).await
    }
}

impl<W: oio::Write> oio::Write for FaultWrapper<W> {
    async fn write(&mut self, bs: Buffer) -> Result<()> {
        self.state.check(FaultOp::Write, &self.path)?;
        self.inner.write(bs).await
    }

    async fn copy_from(&mut self, path: &str, args: OpRead, range: BytesRange) -> Result<()> {
        self.state.check(FaultOp::Write, &self.path)?;
        self.inner.copy_from(path, args, range).await
    }

    async fn close(&mut self) -> Result<Metadata> {
        self.state.check(FaultOp::Close, &self.path)?;
        self.inner.close().await
    }

    async fn abort(&mut self) -> Result<()> {
        self.inner.abort().await
    }
}

impl<L: oio::List> oio::List for FaultWrapper<L> {
    async fn next(&mut self) -> Result<Option<oio::Entry>> {
        match self.state.verdict(FaultOp::List, &self.path)? {
            Verdict::Pass => self.inner.next().await,
            Verdict::Skip => Ok(None),
        }
    }
}

impl<D: oio::Delete> oio::Delete for FaultWrapper<D> {
    async fn delete(&mut self, path: &str, args: OpDelete) -> Result<()> {
        match self.state.verdict(FaultOp::Delete, path)? {
            Verdict::Pass => self.inner.delete(path, args).await,
            Verdict::Skip => Ok(()),
        }
    }

    async fn close(&mut self) -> Result<()> {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(rules: impl IntoIterator<Item = FaultRule>) -> FaultLayer {
        FaultLayer::new(FaultPlan {
            rules: rules.into_iter().collect(),
        })
    }

    #[test]
    fn schedules_fire_as_documented() {
        let first = layer([FaultRule::new(
            FaultOp::Read,
            FaultKind::Temporary,
            FaultSchedule::FirstN(2),
        )]);
        let results: Vec<bool> = (0..4)
            .map(|_| first.state.check(FaultOp::Read, "p").is_err())
            .collect();
        assert_eq!(results, [true, true, false, false]);
        assert_eq!(first.calls(FaultOp::Read), 4);
        assert_eq!(first.injected(FaultOp::Read), 2);
        assert_eq!(first.calls(FaultOp::Write), 0);

        let after = layer([FaultRule::new(
            FaultOp::Write,
            FaultKind::Permanent,
            FaultSchedule::AfterN(1),
        )]);
        let results: Vec<bool> = (0..3)
            .map(|_| after.state.check(FaultOp::Write, "p").is_err())
            .collect();
        assert_eq!(results, [false, true, true]);
    }

    #[test]
    fn kinds_map_to_retry_status() {
        let l = layer([
            FaultRule::new(FaultOp::Stat, FaultKind::Temporary, FaultSchedule::Always),
            FaultRule::new(FaultOp::Delete, FaultKind::Permanent, FaultSchedule::Always),
        ]);
        let temp = l.state.check(FaultOp::Stat, "a").unwrap_err();
        assert!(temp.is_temporary());
        let perm = l.state.check(FaultOp::Delete, "a").unwrap_err();
        assert!(perm.is_permanent());
        assert_eq!(perm.kind(), ErrorKind::PermissionDenied);
        assert!(l.state.check(FaultOp::List, "a").is_ok());
        assert_eq!(l.injected_total(), 2);
    }

    #[test]
    fn lost_faults_skip_deletes_and_listings_only() {
        let l = layer([
            FaultRule::new(FaultOp::Delete, FaultKind::Lost, FaultSchedule::Always),
            FaultRule::new(FaultOp::List, FaultKind::Lost, FaultSchedule::Always),
            FaultRule::new(FaultOp::Read, FaultKind::Lost, FaultSchedule::Always),
        ]);
        assert!(matches!(
            l.state.verdict(FaultOp::Delete, "a"),
            Ok(Verdict::Skip)
        ));
        assert!(matches!(
            l.state.verdict(FaultOp::List, "a"),
            Ok(Verdict::Skip)
        ));
        let err = l.state.check(FaultOp::Read, "a").unwrap_err();
        assert!(err.is_permanent());
        assert_eq!(l.injected_total(), 3);
    }

    #[test]
    fn prefixes_restrict_rules() {
        let l = layer([
            FaultRule::new(FaultOp::Read, FaultKind::Temporary, FaultSchedule::Always)
                .under("chunks/u1/"),
        ]);
        assert!(l.state.check(FaultOp::Read, "chunks/u10/x").is_ok());
        assert!(l.state.check(FaultOp::Read, "chunks/u1/x").is_err());
    }
}
