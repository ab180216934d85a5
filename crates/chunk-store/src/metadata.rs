//! Object user metadata: key/value pairs stored with an object (S3 `x-amz-meta-*`, GCS custom
//! metadata, Azure blob metadata), written with [`Store::writer_with_metadata`] and read with
//! [`Store::stat_meta`].
//!
//! The fs and memory backends keep none. OpenDAL's fs backend could keep them in extended
//! attributes, but those are lost without a word by `cp`, most backups, `gsutil rsync` to a
//! directory and file systems without `user.*` attributes, so chunkvault does not rely on
//! them: a write that asks for metadata on fs or memory fails with
//! [`StoreError::MetadataUnsupported`] before anything is written, and a stat there reports
//! no metadata. Nothing is ever dropped silently.

use std::collections::BTreeMap;

use crate::error::{Result, StoreError, StoreOp};
use crate::path::check_object_path;
use crate::put::PutMode;
use crate::store::Store;
use crate::write::ObjectWriter;

/// User metadata of an object, keys as the backend returns them (S3 lowercases them).
pub type UserMetadata = BTreeMap<String, String>;

/// What a stat of an object found: its size and its user metadata.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObjectMeta {
    /// Size in bytes.
    pub size: u64,
    /// User metadata (always empty on backends that keep none).
    pub user: UserMetadata,
}

impl Store {
    /// Whether this store keeps user metadata with objects: S3, GCS and Azure do; fs and
    /// memory do not (see the module docs).
    pub fn supports_user_metadata(&self) -> bool {
        !matches!(self.scheme(), "fs" | "memory")
            && self.operator().info().capability().write_with_user_metadata
    }

    /// Fails with [`StoreError::MetadataUnsupported`] unless the store keeps user metadata.
    pub(crate) fn require_user_metadata(&self, op: StoreOp, path: &str) -> Result<()> {
        if self.supports_user_metadata() {
            Ok(())
        } else {
            Err(StoreError::MetadataUnsupported {
                path: path.to_owned(),
                op,
                scheme: self.scheme(),
            })
        }
    }

    /// [`Store::writer`] for an object stored with `metadata`. On a store without user
    /// metadata ([`Store::supports_user_metadata`]) it fails with
    /// [`StoreError::MetadataUnsupported`] and writes nothing.
    pub async fn writer_with_metadata(
        &self,
        path: &str,
        mode: PutMode,
        metadata: &UserMetadata,
    ) -> Result<ObjectWriter> {
        check_object_path(path)?;
        self.require_user_metadata(StoreOp::Write, path)?;
        self.open_writer(path, mode, None, Some(metadata)).await
    }

    /// The size and user metadata of the object at `path`, or `None` if there is no object
    /// there. One stat request; on fs and memory the metadata is always empty.
    pub async fn stat_meta(&self, path: &str) -> Result<Option<ObjectMeta>> {
        check_object_path(path)?;
        if self.confine_object(path)? == Some(false) {
            return Ok(None);
        }
        match self.inner.op.stat(path).await {
            Ok(meta) if meta.is_dir() => Ok(None),
            Ok(meta) => {
                let user = if self.supports_user_metadata() {
                    meta.user_metadata()
                        .map(|m| {
                            m.into_iter()
                                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                                .collect()
                        })
                        .unwrap_or_default()
                } else {
                    UserMetadata::new()
                };
                Ok(Some(ObjectMeta {
                    size: meta.content_length(),
                    user,
                }))
            }
            Err(err) if err.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(StoreError::backend(StoreOp::Stat, path, err)),
        }
    }
}
