//! Deletes: batches of objects through OpenDAL's `Deleter`, and verified prefix purges.

use crate::durable::sync_after_delete;
use crate::error::{Result, StoreError, StoreOp};
use crate::list::{Found, PrefixLister};
use crate::path::{check_object_path, check_prefix};
use crate::store::Store;

/// What [`Store::purge_prefix`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PurgeReport {
    /// Objects deleted.
    pub deleted: usize,
    /// Directories removed (fs only; object stores have none).
    pub dirs_removed: usize,
}

/// How many leftover paths a [`StoreError::PurgeIncomplete`] names.
const SAMPLE: usize = 10;

/// Deletes objects through OpenDAL's `Deleter` (batched where the backend can), or with one
/// request per object when the store's `batch_delete` option is off.
enum ObjectDeleter {
    Batch(opendal::Deleter),
    Single(opendal::Operator),
}

impl ObjectDeleter {
    async fn new(store: &Store) -> opendal::Result<Self> {
        if store.inner.options.batch_delete {
            Ok(Self::Batch(store.inner.op.deleter().await?))
        } else {
            Ok(Self::Single(store.inner.op.clone()))
        }
    }

    /// Deletes `path` (batched: queues it, sending a batch when one is full).
    async fn delete(&mut self, path: &str) -> opendal::Result<()> {
        match self {
            Self::Batch(deleter) => deleter.delete(path).await,
            Self::Single(op) => op.delete(path).await,
        }
    }

    /// Sends what is queued.
    async fn close(&mut self) -> opendal::Result<()> {
        match self {
            Self::Batch(deleter) => deleter.close().await,
            Self::Single(_) => Ok(()),
        }
    }
}

impl Store {
    /// Deletes the objects at `paths` in as few requests as the backend allows (S3: 1000 per
    /// request; one per object when [`crate::StoreOptions::batch_delete`] is off) and returns
    /// how many paths were submitted. Deleting a missing object is not an
    /// error. Every path is checked before anything is deleted. On fs the objects'
    /// directories are synced afterwards, so the deletes survive a power loss.
    pub async fn delete_many<I>(&self, paths: I) -> Result<usize>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let paths: Vec<I::Item> = paths.into_iter().collect();
        for path in &paths {
            check_object_path(path.as_ref())?;
            // On fs: only regular files inside the root are ever removed.
            self.confine_object(path.as_ref())?;
        }
        let Some(first) = paths.first() else {
            return Ok(0);
        };
        let mut deleter = ObjectDeleter::new(self)
            .await
            .map_err(|err| StoreError::backend(StoreOp::Delete, first.as_ref(), err))?;
        for path in &paths {
            let path = path.as_ref();
            deleter
                .delete(path)
                .await
                .map_err(|err| StoreError::backend(StoreOp::Delete, path, err))?;
        }
        deleter
            .close()
            .await
            .map_err(|err| StoreError::backend(StoreOp::Delete, first.as_ref(), err))?;
        let deleted: Vec<String> = paths.iter().map(|p| p.as_ref().to_owned()).collect();
        sync_after_delete(self.inner.fs_dirs.as_ref(), deleted, false).await?;
        Ok(paths.len())
    }

    /// Deletes everything under `prefix` (which must end with `/`; the whole bucket is
    /// refused), then lists the prefix again and fails with [`StoreError::PurgeIncomplete`]
    /// if anything is left. The trailing `/` keeps `chunks/u1/` from touching `chunks/u10/`.
    ///
    /// Objects are deleted as the listing streams (bounded memory). On fs the emptied
    /// directories are removed too, so no directory named after a user or conversation stays,
    /// and the directories left are synced so the purge survives a power loss.
    pub async fn purge_prefix(&self, prefix: &str) -> Result<PurgeReport> {
        check_prefix(prefix, false)?;
        self.confine_prefix(prefix)?;
        let mut report = PurgeReport::default();
        let mut dirs: Vec<String> = Vec::new();
        {
            let mut lister = PrefixLister::new(self, prefix, true).await?;
            let mut deleter = ObjectDeleter::new(self)
                .await
                .map_err(|err| StoreError::backend(StoreOp::Delete, prefix, err))?;
            while let Some(found) = lister.next().await? {
                match found {
                    Found::File { path, .. } => {
                        deleter
                            .delete(path.as_str())
                            .await
                            .map_err(|err| StoreError::backend(StoreOp::Delete, &path, err))?;
                        report.deleted += 1;
                    }
                    Found::Dir { path } => dirs.push(path),
                    // Left in place; the check below reports the prefix as not empty.
                    Found::Special { .. } => {}
                }
            }
            deleter
                .close()
                .await
                .map_err(|err| StoreError::backend(StoreOp::Delete, prefix, err))?;
        }
        if self.scheme() == "fs" {
            report.dirs_removed = self.remove_empty_dirs(prefix, dirs.clone()).await;
            // The unlinks happened in the listed directories (now mostly removed) and the
            // removals in their parents: sync what is left of each, up to the root. (A
            // directory path ends with `/`; the `.` stands for an entry inside it.)
            let changed = dirs
                .iter()
                .map(String::as_str)
                .chain([prefix])
                .map(|dir| format!("{dir}."))
                .collect();
            sync_after_delete(self.inner.fs_dirs.as_ref(), changed, true).await?;
        }
        let mut lister = PrefixLister::new(self, prefix, true).await?;
        let mut remaining = 0;
        let mut sample = Vec::new();
        while let Some(found) = lister.next().await? {
            if let Found::File { path, .. } | Found::Special { path, .. } = found {
                remaining += 1;
                if sample.len() < SAMPLE {
                    sample.push(path);
                }
            }
        }
        if remaining > 0 {
            return Err(StoreError::PurgeIncomplete {
                prefix: prefix.to_owned(),
                remaining,
                sample,
            });
        }
        Ok(report)
    }

    /// Removes fs directories deepest first, the prefix itself last. A directory that is not
    /// empty (something was written meanwhile) stays; the verifying listing reports its files.
    async fn remove_empty_dirs(&self, prefix: &str, mut dirs: Vec<String>) -> usize {
        dirs.push(prefix.to_owned());
        dirs.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        dirs.dedup();
        let mut removed = 0;
        for dir in dirs {
            match self.inner.op.delete(&dir).await {
                Ok(()) => removed += 1,
                Err(err) => {
                    tracing::debug!(dir = %dir, error = %err, "directory left in place after purge");
                }
            }
        }
        removed
    }
}
