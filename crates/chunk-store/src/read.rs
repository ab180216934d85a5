//! Reads: whole objects, byte ranges, and metadata.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use crate::error::{Result, StoreError, StoreOp};
use crate::path::check_object_path;
use crate::store::Store;

impl Store {
    /// Reads the whole object at `path`. A missing object is [`StoreError::NotFound`]; on fs,
    /// a link or special file is [`StoreError::UnsafeFsPath`] (see [`crate::confine`]), as for
    /// every read.
    ///
    /// The object is held once: the backend's pieces are copied into one buffer as they
    /// arrive and dropped, never all kept beside a contiguous copy (which is what collecting
    /// them first and then joining them costs: twice the object).
    pub async fn read(&self, path: &str) -> Result<Bytes> {
        self.read_sized(path, 0).await
    }

    /// [`Store::read`] of an object the caller expects to be `size` bytes (from a listing or a
    /// stat): the buffer is allocated at that size once, instead of grown and copied as the
    /// pieces arrive (a 2 MB object grown from empty is copied about a dozen times). An
    /// object of another size is still read whole; `size` only sizes the first allocation,
    /// so the caller bounds it.
    pub async fn read_sized(&self, path: &str, size: u64) -> Result<Bytes> {
        check_object_path(path)?;
        self.confine_object(path)?;
        let fail = |err| StoreError::from_read(StoreOp::Read, path, err);
        let reader = self.inner.op.reader(path).await.map_err(fail)?;
        let mut out = BytesMut::with_capacity(usize::try_from(size).unwrap_or(0));
        reader.read_into(&mut out, ..).await.map_err(fail)?;
        let bytes = out.freeze();
        self.inner.counter.add_read_bytes(bytes.len() as u64);
        Ok(bytes)
    }

    /// Reads bytes `range` (end exclusive) of the object at `path`, in one ranged request.
    ///
    /// Returns exactly `range.end - range.start` bytes or an error: an inverted range, or one
    /// that reaches past the end of the object, is [`StoreError::BadRange`]. An empty range
    /// returns no bytes without asking the backend.
    pub async fn read_range(&self, path: &str, range: Range<u64>) -> Result<Bytes> {
        check_object_path(path)?;
        self.confine_object(path)?;
        if range.start > range.end {
            return Err(StoreError::BadRange {
                path: path.to_owned(),
                range,
                reason: "start is after end".to_owned(),
            });
        }
        let want = range.end - range.start;
        if want == 0 {
            return Ok(Bytes::new());
        }
        let result = self.inner.op.read_with(path).range(range.clone()).await;
        let buffer = match result {
            Ok(buffer) => buffer,
            Err(err) if err.kind() == opendal::ErrorKind::RangeNotSatisfied => {
                return Err(StoreError::BadRange {
                    path: path.to_owned(),
                    range,
                    reason: "the object ends before the range starts".to_owned(),
                });
            }
            Err(err) if err.kind() == opendal::ErrorKind::NotFound => {
                return Err(StoreError::from_read(StoreOp::Read, path, err));
            }
            // Some backends (S3) answer a range that runs past the end with the bytes there
            // are, which OpenDAL reports as a short read; tell that apart by the object size.
            Err(err) => {
                return Err(match self.stat(path).await {
                    Ok(Some(size)) if size < range.end => StoreError::BadRange {
                        path: path.to_owned(),
                        reason: format!("the object has {size} bytes"),
                        range,
                    },
                    _ => StoreError::backend(StoreOp::Read, path, err),
                });
            }
        };
        if buffer.len() as u64 != want {
            return Err(StoreError::BadRange {
                path: path.to_owned(),
                range,
                reason: format!(
                    "got {} bytes: the object ends inside the range",
                    buffer.len()
                ),
            });
        }
        self.inner.counter.add_read_bytes(want);
        Ok(buffer.to_bytes())
    }

    /// Returns the size of the object at `path`, or `None` if there is no object there.
    pub async fn stat(&self, path: &str) -> Result<Option<u64>> {
        check_object_path(path)?;
        if self.confine_object(path)? == Some(false) {
            return Ok(None);
        }
        match self.inner.op.stat(path).await {
            Ok(meta) if meta.is_dir() => Ok(None),
            Ok(meta) => Ok(Some(meta.content_length())),
            Err(err) if err.kind() == opendal::ErrorKind::NotFound => Ok(None),
            Err(err) => Err(StoreError::backend(StoreOp::Stat, path, err)),
        }
    }

    /// Whether an object exists at `path`.
    pub async fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.stat(path).await?.is_some())
    }
}
