//! [`StoreError`]: every failure of the store, with the object path (or prefix) it concerns.

use std::fmt;
use std::ops::Range;

use crate::layout::IdError;
use crate::uri::ACCEPTED_URIS;

/// The store operation an error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreOp {
    /// Building the backend from a URI or operator.
    Open,
    /// A single-PUT write ([`crate::Store::put`]).
    Put,
    /// A piece written to a streaming writer.
    Write,
    /// Closing (committing) a streaming writer.
    Close,
    /// Aborting a streaming writer.
    Abort,
    /// Listing a prefix.
    List,
    /// Reading an object (whole or ranged).
    Read,
    /// Fetching an object's metadata.
    Stat,
    /// Deleting objects.
    Delete,
}

impl fmt::Display for StoreOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoreOp::Open => "open",
            StoreOp::Put => "put",
            StoreOp::Write => "write",
            StoreOp::Close => "close",
            StoreOp::Abort => "abort",
            StoreOp::List => "list",
            StoreOp::Read => "read",
            StoreOp::Stat => "stat",
            StoreOp::Delete => "delete",
        })
    }
}

/// Everything that can go wrong in the store. Every variant names the object path, prefix or
/// URI it is about.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URI is not one of the accepted forms, names a backend that is not compiled in, or has
    /// an option the backend does not know.
    #[error("bad store URI {uri:?}: {reason}; accepted: {ACCEPTED_URIS}")]
    BadUri {
        /// The URI as given, with secrets redacted.
        uri: String,
        /// What was wrong.
        reason: String,
    },
    /// A user or conversation id was rejected.
    #[error(transparent)]
    Id(#[from] IdError),
    /// An object path or prefix is not a plain relative key (empty segment, `.` / `..`, control
    /// character, leading `/`, too long, or a missing / extra trailing `/`).
    #[error("bad object path {path:?}: {reason}")]
    BadPath {
        /// The path or prefix as given.
        path: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// The object does not exist.
    #[error("object {path:?} not found")]
    NotFound {
        /// The object path.
        path: String,
    },
    /// A create-only write found the object already there; nothing was written.
    #[error("object {path:?} already exists (create-only write)")]
    AlreadyExists {
        /// The object path.
        path: String,
    },
    /// A ranged read asked for bytes the object does not have (or an inverted range).
    #[error("range {}..{} of object {path:?} cannot be read: {reason}", range.start, range.end)]
    BadRange {
        /// The object path.
        path: String,
        /// The range asked for.
        range: Range<u64>,
        /// What was wrong.
        reason: String,
    },
    /// A streaming writer was used after an earlier error aborted it.
    #[error("writer for {path:?} was aborted by an earlier error; nothing was written")]
    WriterAborted {
        /// The object path.
        path: String,
    },
    /// The operation needs user metadata stored with the object, which this backend does not
    /// keep (fs and memory: see [`crate::Store::supports_user_metadata`]). Nothing was written.
    #[error(
        "{op} of {path:?} needs object metadata, which the {scheme} backend does not store; \
         nothing was written"
    )]
    MetadataUnsupported {
        /// The object path.
        path: String,
        /// The store operation.
        op: StoreOp,
        /// The backend's URI scheme.
        scheme: &'static str,
    },
    /// The backend failed (after the retries the store is configured for).
    #[error("{op} of {path:?} failed: {source}")]
    Backend {
        /// The object path or prefix.
        path: String,
        /// The store operation.
        op: StoreOp,
        /// The OpenDAL error (kind, status, context).
        #[source]
        source: opendal::Error,
    },
    /// A local file-system step of the fs backend failed: the directory sync that makes a
    /// written object durable, or the sweep of temporary files. After a failed sync the object
    /// may be in place, but it is not known to survive a power loss; write it again (a
    /// create-only write that finds the object syncs the directories before it reports
    /// [`StoreError::AlreadyExists`]).
    #[error("{what} {dir:?} failed (object {path:?}): {source}")]
    LocalIo {
        /// The object path the step was for (empty for a sweep).
        path: String,
        /// The step: "sync of directory", "removal of temporary file", ….
        what: &'static str,
        /// The directory or file the step was on.
        dir: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// On the fs backend, the path leads through, or names, something the store never
    /// follows or touches: a symbolic link, a FIFO, socket or device, a directory where an
    /// object should be, or a file where a directory should be (see [`crate::confine`]).
    /// Nothing was read, written or removed.
    #[error("refused fs path {path:?}: {component:?} is {found}")]
    UnsafeFsPath {
        /// The object path or prefix asked for (empty for a directory of the store itself).
        path: String,
        /// The component that was refused, relative to the root.
        component: String,
        /// What was found there.
        found: &'static str,
    },
    /// A purge deleted what it listed, but listing again still found objects.
    #[error("purge of {prefix:?} incomplete: {remaining} objects remain (first: {sample:?})")]
    PurgeIncomplete {
        /// The prefix purged.
        prefix: String,
        /// How many objects the second listing found.
        remaining: usize,
        /// The first few of them (at most 10).
        sample: Vec<String>,
    },
}

impl StoreError {
    /// Whether trying the same operation again later may succeed: timeouts, throttling, server
    /// errors and dropped connections. `false` for refusals (403, 404, bad input, already exists).
    ///
    /// OpenDAL's retry layer marks every error it gives up on as "persistent", whatever it was
    /// before, so a persistent error counts as temporary unless its kind is a definite refusal
    /// (permission denied, not found, invalid config, unsupported, already exists, condition not
    /// met, bad range, directory/file mix-ups). A permanent error whose kind is `Unexpected`
    /// (for example an S3 `400`) therefore reads as temporary after retries; the retry layer
    /// itself never retried it.
    pub fn is_temporary(&self) -> bool {
        match self {
            StoreError::Backend { source, .. } => backend_is_temporary(source),
            _ => false,
        }
    }

    /// The object path, prefix or URI this error is about.
    pub fn path(&self) -> &str {
        match self {
            StoreError::BadUri { uri, .. } => uri,
            StoreError::Id(_) => "",
            StoreError::BadPath { path, .. }
            | StoreError::NotFound { path }
            | StoreError::AlreadyExists { path }
            | StoreError::BadRange { path, .. }
            | StoreError::WriterAborted { path }
            | StoreError::Backend { path, .. }
            | StoreError::MetadataUnsupported { path, .. }
            | StoreError::LocalIo { path, .. }
            | StoreError::UnsafeFsPath { path, .. } => path,
            StoreError::PurgeIncomplete { prefix, .. } => prefix,
        }
    }

    pub(crate) fn backend(op: StoreOp, path: impl Into<String>, source: opendal::Error) -> Self {
        StoreError::Backend {
            path: path.into(),
            op,
            source,
        }
    }

    /// Maps an OpenDAL error of a read or stat: `NotFound` becomes [`StoreError::NotFound`].
    pub(crate) fn from_read(op: StoreOp, path: &str, source: opendal::Error) -> Self {
        if source.kind() == opendal::ErrorKind::NotFound {
            StoreError::NotFound {
                path: path.to_owned(),
            }
        } else {
            Self::backend(op, path, source)
        }
    }
}

fn backend_is_temporary(err: &opendal::Error) -> bool {
    use opendal::ErrorKind as K;
    if err.is_temporary() {
        return true;
    }
    if !err.is_persistent() {
        return false;
    }
    !matches!(
        err.kind(),
        K::PermissionDenied
            | K::NotFound
            | K::ConfigInvalid
            | K::Unsupported
            | K::AlreadyExists
            | K::ConditionNotMatch
            | K::RangeNotSatisfied
            | K::IsADirectory
            | K::NotADirectory
            | K::IsSameFile
    )
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(err: opendal::Error) -> StoreError {
        StoreError::backend(StoreOp::Read, "chunks/u/c/1.000.bin", err)
    }

    #[test]
    fn temporary_classification() {
        let temp = opendal::Error::new(opendal::ErrorKind::Unexpected, "503").set_temporary();
        assert!(backend(temp).is_temporary());
        let forbidden = opendal::Error::new(opendal::ErrorKind::PermissionDenied, "403");
        assert!(!backend(forbidden).is_temporary());
        let exhausted = opendal::Error::new(opendal::ErrorKind::RateLimited, "429")
            .set_temporary()
            .set_persistent();
        assert!(backend(exhausted).is_temporary());
        let refused_after_retry_layer =
            opendal::Error::new(opendal::ErrorKind::PermissionDenied, "403").set_persistent();
        assert!(!backend(refused_after_retry_layer).is_temporary());
        assert!(
            !StoreError::NotFound {
                path: "x".to_owned()
            }
            .is_temporary()
        );
    }

    #[test]
    fn messages_name_the_path() {
        let err = backend(opendal::Error::new(opendal::ErrorKind::Unexpected, "boom"));
        let text = err.to_string();
        assert!(text.contains("read of \"chunks/u/c/1.000.bin\""), "{text}");
        assert_eq!(err.path(), "chunks/u/c/1.000.bin");
        let err = StoreError::BadUri {
            uri: "ftp://x".to_owned(),
            reason: "unknown scheme \"ftp\"".to_owned(),
        };
        assert!(err.to_string().contains("memory://"), "{err}");
    }
}
