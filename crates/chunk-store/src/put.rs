//! [`Store::put`]: one object from one buffer, in a single PUT.

use bytes::Bytes;

use crate::error::{Result, StoreError, StoreOp};
use crate::path::check_object_path;
use crate::store::Store;

/// Whether a write may replace an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutMode {
    /// Replace whatever is at the path.
    Overwrite,
    /// Fail with [`StoreError::AlreadyExists`] if the object exists; how this is enforced is
    /// the store's [`crate::CreateOnlyMode`].
    CreateOnly,
}

/// Maps an OpenDAL write error: a failed create-only condition becomes
/// [`StoreError::AlreadyExists`].
pub(crate) fn map_write_error(
    op: StoreOp,
    path: &str,
    mode: PutMode,
    err: opendal::Error,
) -> StoreError {
    let exists = matches!(
        err.kind(),
        opendal::ErrorKind::AlreadyExists | opendal::ErrorKind::ConditionNotMatch
    );
    if mode == PutMode::CreateOnly && exists {
        StoreError::AlreadyExists {
            path: path.to_owned(),
        }
    } else {
        StoreError::backend(op, path, err)
    }
}

impl Store {
    /// Writes `bytes` as the object at `path` in one request (a single PUT on S3 for any size
    /// the backend allows; S3: 5 GiB). The object appears whole or not at all: a failure
    /// aborts the write and leaves nothing at the path.
    ///
    /// With [`PutMode::CreateOnly`], an existing object gives [`StoreError::AlreadyExists`] and
    /// is left untouched. If a retried create-only PUT had in fact succeeded before its reply
    /// was lost, the retry reports `AlreadyExists` for the store's own object.
    pub async fn put(&self, path: &str, bytes: impl Into<Bytes>, mode: PutMode) -> Result<()> {
        check_object_path(path)?;
        let bytes = bytes.into();
        let mut writer = self
            .open_writer(path, mode, Some(bytes.len()), None)
            .await?;
        writer.write(bytes).await.map_err(as_put)?;
        writer.close().await.map_err(as_put)?;
        Ok(())
    }
}

/// Reports a failure inside `put` as a put, whatever writer step it came from.
fn as_put(err: StoreError) -> StoreError {
    match err {
        StoreError::Backend { path, source, .. } => StoreError::Backend {
            path,
            op: StoreOp::Put,
            source,
        },
        other => other,
    }
}
