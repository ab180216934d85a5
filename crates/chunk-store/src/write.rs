//! [`ObjectWriter`]: one object, written piece by piece, committed at close or not at all.
//!
//! Memory stays bounded whatever the object size: the writer holds at most about two parts of
//! the backend's multipart size (S3 / GCS / Azure: 5 MiB), plus the piece being written.
//! Below that size the object is one single PUT at close; above it, a multipart upload (Azure:
//! blocks and a block list) completed at close.
//!
//! Nothing is visible at the path before [`ObjectWriter::close`] succeeds, on every backend:
//! - fs writes into `<root>/.chunkvault-tmp/` (OpenDAL's `atomic_write_dir`) and renames the
//!   finished file into place at close;
//! - memory stores the object at close;
//! - S3 / GCS / Azure send the single PUT, or complete the multipart upload, at close.
//!
//! On fs, a create-only write is atomic: the object is written under a private staging name in
//! `.chunkvault-tmp/` and then hard-linked to its path, which the kernel refuses when any entry
//! is there, so of two writers racing on one path exactly one succeeds and the other gets
//! [`StoreError::AlreadyExists`]. Every fs write first checks its path with
//! [`crate::confine`]: no link is written through or replaced.
//!
//! On fs, a successful close also syncs the directories from the object's up to the root, so
//! a confirmed object survives a power loss, and a create-only write that finds the object
//! syncs them before it reports [`StoreError::AlreadyExists`] (see [`crate::durable`]).
//!
//! Any error while writing or closing aborts the backend writer (fs: temp file removed;
//! S3: multipart upload aborted) before it is returned, and the writer refuses further
//! pieces with [`StoreError::WriterAborted`]. Dropping a writer without `close` or `abort`
//! commits nothing either; the drop also spawns the abort on the current tokio runtime to
//! clean up the temp file or the multipart upload (without a runtime, a temp file stays in
//! `.chunkvault-tmp/`, or an incomplete upload stays invisible until the bucket's lifecycle
//! rule removes it).

use bytes::Bytes;

use crate::durable::{FsDirs, sync_object_dirs};
use crate::error::{Result, StoreError, StoreOp};
use crate::metadata::UserMetadata;
use crate::path::check_object_path;
use crate::put::{PutMode, map_write_error};
use crate::store::{CreateOnlyMode, Store};

/// The part size of a streamed write to Azure Blob. OpenDAL buffers S3 and GCS writes to their
/// minimum multipart size (5 MiB) by itself, but passes every piece given to an Azure writer
/// down as a block of its own (Azure has no minimum block size): a 60 s Omi batch written as
/// twelve 5 s chunks cost 12 Put Block requests and a Put Block List instead of one Put Blob,
/// and 10 MiB in 1 MiB pieces 11 requests. Found by the behaviour suite on Azurite; fixed by
/// asking for 5 MiB parts, the same as S3 and GCS.
const STREAM_PART_SIZE: usize = 5 * 1024 * 1024;

/// A streaming writer for one object. Made by [`Store::writer`].
pub struct ObjectWriter {
    path: String,
    mode: PutMode,
    writer: Option<opendal::Writer>,
    written: u64,
    fs_dirs: Option<FsDirs>,
    /// On fs, for a create-only write: the staging path (relative to the root) that OpenDAL
    /// writes, linked to `path` at close.
    staged: Option<String>,
}

impl std::fmt::Debug for ObjectWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectWriter")
            .field("path", &self.path)
            .field("mode", &self.mode)
            .field("written", &self.written)
            .field("open", &self.writer.is_some())
            .finish()
    }
}

impl Store {
    /// Starts writing the object at `path`. With [`PutMode::CreateOnly`] the write fails with
    /// [`StoreError::AlreadyExists`] if the object exists (checked at start in
    /// [`CreateOnlyMode::StatThenWrite`], at the first piece or at close natively).
    pub async fn writer(&self, path: &str, mode: PutMode) -> Result<ObjectWriter> {
        check_object_path(path)?;
        self.open_writer(path, mode, None, None).await
    }

    /// Opens the writer; an `AlreadyExists` is made durable first (see [`settle`]).
    pub(crate) async fn open_writer(
        &self,
        path: &str,
        mode: PutMode,
        whole_len: Option<usize>,
        metadata: Option<&UserMetadata>,
    ) -> Result<ObjectWriter> {
        let opened = self
            .open_backend_writer(path, mode, whole_len, metadata)
            .await;
        settle(self.inner.fs_dirs.as_ref(), path, opened).await
    }

    /// Opens the OpenDAL writer. `whole_len` (from `put`) makes the backend buffer the whole
    /// object, so a put is one single PUT on every backend. `metadata` is stored with the
    /// object (callers check [`Store::supports_user_metadata`] first).
    async fn open_backend_writer(
        &self,
        path: &str,
        mode: PutMode,
        whole_len: Option<usize>,
        metadata: Option<&UserMetadata>,
    ) -> Result<ObjectWriter> {
        if metadata.is_some() {
            self.require_user_metadata(StoreOp::Write, path)?;
        }
        if let Some(dirs) = self.inner.fs_dirs.as_ref() {
            // OpenDAL writes its temporary file there: never through a link.
            crate::confine::check_own_dir(&dirs.temp)?;
            let exists = crate::confine::check_object(&dirs.root, path)?;
            if mode == PutMode::CreateOnly {
                if exists {
                    return Err(StoreError::AlreadyExists {
                        path: path.to_owned(),
                    });
                }
                return self.open_staged_writer(path, whole_len).await;
            }
        }
        let native = match mode {
            PutMode::Overwrite => false,
            PutMode::CreateOnly => match self.inner.options.create_only {
                CreateOnlyMode::Native => true,
                CreateOnlyMode::StatThenWrite => {
                    if self.stat(path).await?.is_some() {
                        return Err(StoreError::AlreadyExists {
                            path: path.to_owned(),
                        });
                    }
                    false
                }
            },
        };
        let mut future = self.inner.op.writer_with(path).if_not_exists(native);
        if let Some(metadata) = metadata {
            future = future.user_metadata(metadata.clone());
        }
        if let Some(len) = whole_len.filter(|&len| len > 0) {
            future = future.chunk(len);
        } else if self.scheme() == "azblob" {
            future = future.chunk(STREAM_PART_SIZE);
        }
        let writer = future
            .await
            .map_err(|err| map_write_error(StoreOp::Write, path, mode, err))?;
        Ok(ObjectWriter {
            path: path.to_owned(),
            mode,
            writer: Some(writer),
            written: 0,
            fs_dirs: self.inner.fs_dirs.clone(),
            staged: None,
        })
    }

    /// On fs, a create-only writer: OpenDAL writes a staging file that `close` links to `path`.
    async fn open_staged_writer(
        &self,
        path: &str,
        whole_len: Option<usize>,
    ) -> Result<ObjectWriter> {
        let staged = staging_path();
        let mut future = self.inner.op.writer_with(&staged);
        if let Some(len) = whole_len.filter(|&len| len > 0) {
            future = future.chunk(len);
        }
        let writer = future
            .await
            .map_err(|err| map_write_error(StoreOp::Write, path, PutMode::CreateOnly, err))?;
        Ok(ObjectWriter {
            path: path.to_owned(),
            mode: PutMode::CreateOnly,
            writer: Some(writer),
            written: 0,
            fs_dirs: self.inner.fs_dirs.clone(),
            staged: Some(staged),
        })
    }
}

/// A fresh staging path under the fs root's temporary directory: process id, a counter and
/// the time, so no two writers (in this process or another) share one.
fn staging_path() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}/staged-{}-{n}-{nanos}",
        crate::path::FS_TMP_DIR,
        std::process::id()
    )
}

/// Links the finished staging file `staged` to `path` under `root`, which fails if anything is
/// at `path` (the atomic create-only commit), then removes the staging name.
async fn commit_staged(root: std::path::PathBuf, staged: String, path: String) -> Result<()> {
    crate::durable::run_blocking(move || {
        let from = root.join(&staged);
        let result = link_into_place(&root, &from, &path);
        if let Err(e) = std::fs::remove_file(&from) {
            tracing::warn!(staged = %from.display(), error = %e, "staging file left for the sweep");
        }
        result
    })
    .await
}

/// `link(from, root/path)` after checking `path` again (see [`crate::confine`]), creating the
/// object's directories first.
fn link_into_place(root: &std::path::Path, from: &std::path::Path, path: &str) -> Result<()> {
    let local = |what: &'static str, dir: std::path::PathBuf| {
        move |source| StoreError::LocalIo {
            path: path.to_owned(),
            what,
            dir,
            source,
        }
    };
    if crate::confine::check_object(root, path)? {
        return Err(StoreError::AlreadyExists {
            path: path.to_owned(),
        });
    }
    let to = root.join(path);
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .map_err(local("creation of directory", parent.to_path_buf()))?;
        // The directories just made must not have been swapped for links meanwhile.
        crate::confine::check_object(root, path)?;
    }
    match std::fs::hard_link(from, &to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(StoreError::AlreadyExists {
            path: path.to_owned(),
        }),
        Err(e) => Err(local("atomic create-only link to", to.clone())(e)),
    }
}

impl ObjectWriter {
    /// The object path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Writes the next piece. On error the writer is aborted (nothing is left at the path) and
    /// every later call fails with [`StoreError::WriterAborted`].
    pub async fn write(&mut self, bytes: Bytes) -> Result<()> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(StoreError::WriterAborted {
                path: self.path.clone(),
            });
        };
        if bytes.is_empty() {
            return Ok(());
        }
        let len = bytes.len() as u64;
        match writer.write(bytes).await {
            Ok(()) => {
                self.written += len;
                Ok(())
            }
            Err(err) => {
                self.abort_after_error().await;
                let err = map_write_error(StoreOp::Write, &self.path, self.mode, err);
                settle(self.fs_dirs.as_ref(), &self.path, Err(err)).await
            }
        }
    }

    /// Commits the object and returns its size in bytes. On error the writer is aborted and
    /// nothing is left at the path (on fs, a create-only race aside, see
    /// [`CreateOnlyMode::Native`]).
    pub async fn close(mut self) -> Result<u64> {
        let Some(writer) = self.writer.as_mut() else {
            return Err(StoreError::WriterAborted {
                path: self.path.clone(),
            });
        };
        match writer.close().await {
            Ok(_) => {
                self.writer = None;
                if let (Some(staged), Some(dirs)) = (self.staged.take(), self.fs_dirs.as_ref()) {
                    let committed =
                        commit_staged(dirs.root.clone(), staged, self.path.clone()).await;
                    settle(self.fs_dirs.as_ref(), &self.path, committed).await?;
                }
                sync_object_dirs(self.fs_dirs.as_ref(), &self.path).await?;
                Ok(self.written)
            }
            Err(err) => {
                self.abort_after_error().await;
                let err = map_write_error(StoreOp::Close, &self.path, self.mode, err);
                settle(self.fs_dirs.as_ref(), &self.path, Err(err)).await
            }
        }
    }

    /// Abandons the object: nothing is committed and the backend's temporary state is removed.
    pub async fn abort(mut self) -> Result<()> {
        let Some(mut writer) = self.writer.take() else {
            return Ok(());
        };
        writer
            .abort()
            .await
            .map_err(|err| StoreError::backend(StoreOp::Abort, &self.path, err))
    }

    async fn abort_after_error(&mut self) {
        if let Some(mut writer) = self.writer.take()
            && let Err(err) = writer.abort().await
        {
            tracing::warn!(path = %self.path, error = %err, "abort after a failed write also failed");
        }
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        let Some(mut writer) = self.writer.take() else {
            return;
        };
        let path = std::mem::take(&mut self.path);
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Err(err) = writer.abort().await {
                        tracing::warn!(path = %path, error = %err, "abort of a dropped writer failed");
                    }
                });
            }
            Err(_) => {
                tracing::warn!(path = %path, "writer dropped outside a tokio runtime; not aborted");
            }
        }
    }
}

/// Passes `result` through, but first syncs the object's directories (fs only) when it is
/// [`StoreError::AlreadyExists`]: the object found may be one whose rename was never synced
/// (its writer's sync failed, or a power loss came first), and a caller that takes "already
/// exists" as "stored" must be able to rely on it. A failed sync replaces the error.
async fn settle<T>(fs_dirs: Option<&FsDirs>, path: &str, result: Result<T>) -> Result<T> {
    if let Err(StoreError::AlreadyExists { .. }) = &result {
        sync_object_dirs(fs_dirs, path).await?;
    }
    result
}
