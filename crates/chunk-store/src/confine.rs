//! Confinement of the fs backend to its root: no symbolic link is ever followed, and only
//! regular files and directories are read, written or removed.
//!
//! OpenDAL's fs backend resolves paths with the operating system's usual rules, so a symbolic
//! link anywhere under the root (`chunks/u -> /`) would take a read, a write, a delete or a
//! purge outside it. Before every operation on an fs store, the store walks the object path (or
//! prefix) from the root with `lstat`, which never follows a link, and refuses:
//! - a symbolic link at any component, the object's own name included;
//! - a component above the object that is not a directory;
//! - an object that exists but is not a regular file (a FIFO, a device, a socket).
//!
//! Components that do not exist yet are fine: a write creates them. Listings report links and
//! other special files as [`crate::ForeignObject`]s with the reason, and never descend into
//! them; purges leave them in place and report the prefix as not verified empty.
//!
//! The check and the operation are two steps, so a process that can write into the root while
//! chunkvault runs could still swap a checked directory for a link in between (OpenDAL's fs
//! backend opens paths by name, not relative to a checked directory handle). What the check
//! rules out is every link or special file that is already there, which is what a store
//! written by someone else holds.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use opendal::raw::oio;
use opendal::raw::*;
use opendal::{Capability, OperationContext};

use crate::error::{Result, StoreError};

/// What an fs entry is, seen without following links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EntryType {
    /// Nothing at the path.
    Missing,
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (never followed).
    Symlink,
    /// A FIFO, socket, or device node.
    Special,
}

impl EntryType {
    /// What an entry of this type is, for messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            EntryType::Missing => "missing",
            EntryType::File => "a regular file",
            EntryType::Dir => "a directory",
            EntryType::Symlink => "a symbolic link (never followed)",
            EntryType::Special => "not a regular file (FIFO, socket or device)",
        }
    }
}

/// The type of the entry at `path`, by `lstat`.
pub(crate) fn entry_type(path: &Path) -> io::Result<EntryType> {
    match path.symlink_metadata() {
        Ok(meta) => {
            let ft = meta.file_type();
            Ok(if ft.is_symlink() {
                EntryType::Symlink
            } else if ft.is_dir() {
                EntryType::Dir
            } else if ft.is_file() {
                EntryType::File
            } else {
                EntryType::Special
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(EntryType::Missing),
        Err(e) => Err(e),
    }
}

fn unsafe_path(path: &str, component: String, found: EntryType) -> StoreError {
    StoreError::UnsafeFsPath {
        path: path.to_owned(),
        component,
        found: found.describe(),
    }
}

fn io_error(path: &str, dir: PathBuf, source: io::Error) -> StoreError {
    StoreError::LocalIo {
        path: path.to_owned(),
        what: "lstat of",
        dir,
        source,
    }
}

/// Checks the directories of `key` (an object path, or a prefix ending in `/`) under `root`:
/// each existing component must be a real directory. Returns the type of the last component
/// for an object path (`Dir` for a prefix whose directories all exist).
fn walk(root: &Path, key: &str) -> Result<EntryType> {
    let parts: Vec<&str> = key.split('/').filter(|p| !p.is_empty()).collect();
    let is_prefix = key.ends_with('/') || key.is_empty();
    let mut at = root.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        at.push(part);
        let last = i + 1 == parts.len();
        let found = entry_type(&at).map_err(|e| io_error(key, at.clone(), e))?;
        let shown = || parts[..=i].join("/");
        match found {
            EntryType::Missing => return Ok(EntryType::Missing),
            EntryType::Dir if !last || is_prefix => {}
            EntryType::File if last && !is_prefix => return Ok(EntryType::File),
            EntryType::Dir => return Ok(EntryType::Dir),
            other => return Err(unsafe_path(key, shown(), other)),
        }
    }
    Ok(EntryType::Dir)
}

/// Checks that the object `path` can be read or removed without leaving `root`: no link on
/// the way, and the object, if it exists, a regular file. Returns whether it exists.
pub(crate) fn check_object(root: &Path, path: &str) -> Result<bool> {
    match walk(root, path)? {
        EntryType::Missing => Ok(false),
        EntryType::File => Ok(true),
        other => Err(unsafe_path(path, path.to_owned(), other)),
    }
}

/// Checks that listing or purging `prefix` stays under `root`: every existing directory of the
/// prefix is a real directory.
pub(crate) fn check_prefix(root: &Path, prefix: &str) -> Result<()> {
    walk(root, prefix).map(|_| ())
}

/// Checks a directory the store itself uses (the temporary directory): a real directory or
/// missing, never a link.
pub(crate) fn check_own_dir(dir: &Path) -> Result<()> {
    match entry_type(dir).map_err(|e| io_error("", dir.to_path_buf(), e))? {
        EntryType::Missing | EntryType::Dir => Ok(()),
        other => Err(StoreError::UnsafeFsPath {
            path: String::new(),
            component: dir.display().to_string(),
            found: other.describe(),
        }),
    }
}

/// The fs backend confined to its root, as an OpenDAL service: made by [`confined_fs`], it
/// wraps OpenDAL's own fs service *below* OpenDAL's completion layer. That layer asks the
/// service to `stat` every listed entry whose type the lister could not name, and OpenDAL's fs
/// `stat` follows links: a link to a directory came back as a directory, which a recursive
/// listing (and so a purge) then descended into. Here `stat` looks with `lstat`, and a link or
/// special file stays of unknown type; every other operation refuses a path that goes through
/// a link, so nothing reaches outside the root even if a caller skipped the store's checks.
#[derive(Debug)]
pub(crate) struct ConfinedFs {
    inner: Servicer,
    root: PathBuf,
}

/// Builds an [`opendal::Operator`] for the fs backend of `builder`, confined to its root (see
/// [`ConfinedFs`]).
pub(crate) fn confined_fs(builder: opendal::services::Fs) -> opendal::Result<opendal::Operator> {
    opendal::Operator::new(ConfinedFsBuilder(Some(builder)))
}

#[derive(Default)]
struct ConfinedFsBuilder(Option<opendal::services::Fs>);

impl opendal::Builder for ConfinedFsBuilder {
    type Config = ();

    fn build(self) -> opendal::Result<impl Service> {
        let fs = self.0.unwrap_or_default().build()?;
        let inner: Servicer = Arc::new(fs);
        let root = PathBuf::from(&*inner.info().root());
        Ok(ConfinedFs { inner, root })
    }
}

fn refused(path: &str, error: &StoreError) -> opendal::Error {
    opendal::Error::new(opendal::ErrorKind::PermissionDenied, error.to_string())
        .with_operation("confined fs")
        .with_context("path", path)
}

/// Refuses the OpenDAL path `path` under `root` (an object, or a directory when it ends in
/// `/`) when it goes through a link or names a special file.
fn check_key(root: &Path, path: &str) -> opendal::Result<()> {
    let key = path.trim_start_matches('/');
    let checked = if key.ends_with('/') || key.is_empty() {
        check_prefix(root, key)
    } else {
        check_object(root, key).map(|_| ())
    };
    checked.map_err(|e| refused(path, &e))
}

impl ConfinedFs {
    fn check(&self, path: &str) -> opendal::Result<()> {
        check_key(&self.root, path)
    }
}

impl Service for ConfinedFs {
    type Reader = oio::Reader;
    type Writer = oio::Writer;
    type Lister = oio::Lister;
    type Deleter = ConfinedDeleter;
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
    ) -> opendal::Result<RpCreateDir> {
        self.check(path)?;
        self.inner.create_dir(ctx, path, args).await
    }

    async fn stat(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpStat,
    ) -> opendal::Result<RpStat> {
        let key = path.trim_start_matches('/').trim_end_matches('/');
        if !key.is_empty() {
            let local = self.root.join(key);
            match entry_type(&local) {
                Ok(EntryType::Symlink | EntryType::Special) => {
                    return Ok(RpStat::new(opendal::MetadataBuilder::unknown().build()));
                }
                Ok(_) => {}
                Err(e) => {
                    return Err(refused(path, &io_error(key, local, e)));
                }
            }
        }
        self.check(path)?;
        self.inner.stat(ctx, path, args).await
    }

    fn read(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpRead,
    ) -> opendal::Result<oio::Reader> {
        self.check(path)?;
        self.inner.read(ctx, path, args)
    }

    fn write(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpWrite,
    ) -> opendal::Result<oio::Writer> {
        self.check(path)?;
        self.inner.write(ctx, path, args)
    }

    fn delete(&self, ctx: &OperationContext) -> opendal::Result<ConfinedDeleter> {
        Ok(ConfinedDeleter {
            inner: self.inner.delete(ctx)?,
            root: self.root.clone(),
        })
    }

    fn list(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpList,
    ) -> opendal::Result<oio::Lister> {
        self.check(path)?;
        self.inner.list(ctx, path, args)
    }

    fn copy(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpCopy,
    ) -> opendal::Result<oio::Copier> {
        self.check(from)?;
        self.check(to)?;
        self.inner.copy(ctx, from, to, args)
    }

    fn compose(
        &self,
        ctx: &OperationContext,
        to: &str,
        args: OpCompose,
    ) -> opendal::Result<oio::Composer> {
        self.check(to)?;
        self.inner.compose(ctx, to, args)
    }

    async fn rename(
        &self,
        ctx: &OperationContext,
        from: &str,
        to: &str,
        args: OpRename,
    ) -> opendal::Result<RpRename> {
        self.check(from)?;
        self.check(to)?;
        self.inner.rename(ctx, from, to, args).await
    }

    async fn restore(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpRestore,
    ) -> opendal::Result<RpRestore> {
        self.check(path)?;
        self.inner.restore(ctx, path, args).await
    }

    async fn presign(
        &self,
        ctx: &OperationContext,
        path: &str,
        args: OpPresign,
    ) -> opendal::Result<RpPresign> {
        self.inner.presign(ctx, path, args).await
    }
}

/// The fs deleter of [`ConfinedFs`]: removes only regular files, and directories, reached
/// without a link.
#[doc(hidden)]
pub struct ConfinedDeleter {
    inner: oio::Deleter,
    root: PathBuf,
}

impl oio::Delete for ConfinedDeleter {
    async fn delete(&mut self, path: &str, args: OpDelete) -> opendal::Result<()> {
        check_key(&self.root, path)?;
        self.inner.delete(path, args).await
    }

    async fn close(&mut self) -> opendal::Result<()> {
        self.inner.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> std::io::Result<(tempfile::TempDir, tempfile::TempDir)> {
        let root = tempfile::tempdir()?;
        let outside = tempfile::tempdir()?;
        std::fs::create_dir_all(root.path().join("chunks/u/c"))?;
        std::fs::write(root.path().join("chunks/u/c/1.000.bin"), b"pcm")?;
        std::fs::write(outside.path().join("secret"), b"secret")?;
        Ok((root, outside))
    }

    #[test]
    fn plain_files_and_missing_paths_pass() -> std::io::Result<()> {
        let (root, _outside) = tree()?;
        let root = root.path();
        assert!(matches!(
            check_object(root, "chunks/u/c/1.000.bin"),
            Ok(true)
        ));
        assert!(matches!(
            check_object(root, "chunks/u/c/2.000.bin"),
            Ok(false)
        ));
        assert!(matches!(
            check_object(root, "chunks/new/x/1.000.bin"),
            Ok(false)
        ));
        assert!(check_prefix(root, "chunks/u/").is_ok());
        assert!(check_prefix(root, "chunks/none/").is_ok());
        assert!(check_prefix(root, "").is_ok());
        Ok(())
    }

    #[test]
    fn links_and_special_files_are_refused_wherever_they_are() -> std::io::Result<()> {
        let (root, outside) = tree()?;
        let r = root.path();
        symlink(outside.path(), r.join("chunks/evil"))?;
        symlink(
            outside.path().join("secret"),
            r.join("chunks/u/c/9.000.bin"),
        )?;
        std::fs::create_dir(r.join("chunks/u/c/5.000.bin"))?;
        let refused = |result: Result<bool>, component: &str, found: &str| match result {
            Err(StoreError::UnsafeFsPath {
                component: c,
                found: f,
                ..
            }) => {
                assert_eq!(c, component);
                assert!(f.contains(found), "{f}");
            }
            other => panic!("expected UnsafeFsPath for {component}, got {other:?}"),
        };
        refused(
            check_object(r, "chunks/evil/c/1.000.bin"),
            "chunks/evil",
            "symbolic link",
        );
        refused(
            check_object(r, "chunks/u/c/9.000.bin"),
            "chunks/u/c/9.000.bin",
            "symbolic link",
        );
        refused(
            check_object(r, "chunks/u/c/5.000.bin"),
            "chunks/u/c/5.000.bin",
            "directory",
        );
        // A file where a directory should be.
        refused(
            check_object(r, "chunks/u/c/1.000.bin/x"),
            "chunks/u/c/1.000.bin",
            "regular file",
        );
        assert!(check_prefix(r, "chunks/evil/").is_err());
        assert!(check_prefix(r, "chunks/evil/c/").is_err());
        // A link to the store's own temporary directory.
        symlink(outside.path(), r.join(".chunkvault-tmp"))?;
        assert!(check_own_dir(&r.join(".chunkvault-tmp")).is_err());
        assert!(check_own_dir(&r.join("chunks")).is_ok());
        assert!(check_own_dir(&r.join("nothing")).is_ok());
        Ok(())
    }

    #[tokio::test]
    async fn a_linked_temp_dir_is_never_swept_nor_written() -> Result<()> {
        let io = |e: std::io::Error| StoreError::LocalIo {
            path: String::new(),
            what: "test setup",
            dir: PathBuf::new(),
            source: e,
        };
        let root = tempfile::tempdir().map_err(io)?;
        let outside = tempfile::tempdir().map_err(io)?;
        let victim = outside.path().join("old-file");
        std::fs::write(&victim, b"keep").map_err(io)?;
        let two_hours_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(&victim)
            .and_then(|f| f.set_modified(two_hours_ago))
            .map_err(io)?;
        let store = crate::Store::from_uri(&format!("fs://{}", root.path().display()))?;
        // The store made its temp dir; someone replaces it with a link.
        let temp = root.path().join(crate::FS_TMP_DIR);
        std::fs::remove_dir_all(&temp).map_err(io)?;
        symlink(outside.path(), &temp).map_err(io)?;
        let swept = store
            .sweep_fs_temp(std::time::Duration::from_secs(60))
            .await;
        assert!(
            matches!(swept, Err(StoreError::UnsafeFsPath { .. })),
            "{swept:?}"
        );
        for mode in [crate::PutMode::CreateOnly, crate::PutMode::Overwrite] {
            let put = store.put("chunks/u/c/1.000.bin", &b"pcm"[..], mode).await;
            assert!(
                matches!(put, Err(StoreError::UnsafeFsPath { .. })),
                "{put:?}"
            );
        }
        assert_eq!(std::fs::read(&victim).map_err(io)?, b"keep");
        assert_eq!(std::fs::read_dir(outside.path()).map_err(io)?.count(), 1);
        Ok(())
    }
}
