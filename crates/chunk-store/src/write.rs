//! [`ObjectWriter`]: one object, written piece by piece, committed at close or not at all.
//!
//! Memory stays bounded whatever the object size: the writer holds at most about two parts of
//! the backend's multipart size (S3 / GCS: 5 MiB), plus the piece being written. Below that
//! size the object is one single PUT at close; above it, a multipart upload completed at close.
//!
//! Nothing is visible at the path before [`ObjectWriter::close`] succeeds, on every backend:
//! - fs writes into `<root>/.chunkvault-tmp/` (OpenDAL's `atomic_write_dir`) and renames the
//!   finished file into place at close;
//! - memory stores the object at close;
//! - S3 / GCS / Azure send the single PUT, or complete the multipart upload, at close.
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
use crate::path::check_object_path;
use crate::put::{PutMode, map_write_error};
use crate::store::{CreateOnlyMode, Store};

/// A streaming writer for one object. Made by [`Store::writer`].
pub struct ObjectWriter {
    path: String,
    mode: PutMode,
    writer: Option<opendal::Writer>,
    written: u64,
    fs_dirs: Option<FsDirs>,
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
        self.open_writer(path, mode, None).await
    }

    /// Opens the writer; an `AlreadyExists` is made durable first (see [`settle`]).
    pub(crate) async fn open_writer(
        &self,
        path: &str,
        mode: PutMode,
        whole_len: Option<usize>,
    ) -> Result<ObjectWriter> {
        let opened = self.open_backend_writer(path, mode, whole_len).await;
        settle(self.inner.fs_dirs.as_ref(), path, opened).await
    }

    /// Opens the OpenDAL writer. `whole_len` (from `put`) makes the backend buffer the whole
    /// object, so a put is one single PUT on every backend.
    async fn open_backend_writer(
        &self,
        path: &str,
        mode: PutMode,
        whole_len: Option<usize>,
    ) -> Result<ObjectWriter> {
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
        if let Some(len) = whole_len.filter(|&len| len > 0) {
            future = future.chunk(len);
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
        })
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
