//! Durability on the local file system: directory syncs after a write, and the sweep of
//! temporary files that killed writers leave behind.
//!
//! OpenDAL's fs backend syncs an object's file before it renames the file into place, but not
//! the directory that holds the new name. After a power loss (a kill is harmless) the rename
//! can be lost and the object with it, although the write was confirmed. The recorder removes
//! a batch from its spool once the store confirms it, so a lost rename would lose audio.
//! [`ObjectWriter::close`](crate::ObjectWriter::close) therefore syncs, on fs, every directory
//! from the object's own up to the store root (new directories are themselves new names in
//! their parents), and reports a failed sync as an error: the batch stays in the spool, and the
//! replay's identical-content write syncs again.
//!
//! Deletes sync the directories they changed too, so a deleted recording does not come back
//! after a power loss ([`Store::delete_many`], [`Store::purge_prefix`]).
//!
//! A writer killed between its first piece and its close leaves its temporary file in
//! `<root>/.chunkvault-tmp/` (never visible to listings). [`Store::sweep_fs_temp`] removes the
//! ones older than a given age; the recorder calls it when it starts.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{Result, StoreError};
use crate::store::Store;

/// Where an fs store keeps its objects and its temporary files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FsDirs {
    /// The canonical root directory.
    pub(crate) root: PathBuf,
    /// OpenDAL's `atomic_write_dir`.
    pub(crate) temp: PathBuf,
}

/// What [`Store::sweep_fs_temp`] found in the temporary directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TempSweep {
    /// Temporary files removed (older than the age asked for).
    pub removed: usize,
    /// Bytes of the removed files.
    pub removed_bytes: u64,
    /// Temporary files kept because they are younger (a write may still be going on).
    pub kept: usize,
}

impl Store {
    /// Removes the temporary files of the fs backend older than `older_than`: the remains of
    /// writers that were killed before they closed. Younger files are kept, since a write may
    /// still be going on; pick an age well above the longest write (the recorder uses one hour).
    /// On other backends there is nothing to sweep and the result is empty.
    ///
    /// Errors: [`StoreError::LocalIo`] when the directory cannot be read or a file not removed.
    pub async fn sweep_fs_temp(&self, older_than: Duration) -> Result<TempSweep> {
        let Some(dirs) = self.inner.fs_dirs.clone() else {
            return Ok(TempSweep::default());
        };
        run_blocking(move || {
            let mut report = TempSweep::default();
            // The temporary directory, and the staging files of create-only writes in the
            // root's own one when the URI moved the temporary directory elsewhere.
            let own = dirs.root.join(crate::path::FS_TMP_DIR);
            for dir in std::iter::once(&dirs.temp).chain((own != dirs.temp).then_some(&own)) {
                let found = sweep(dir, older_than, SystemTime::now())?;
                report.removed += found.removed;
                report.removed_bytes += found.removed_bytes;
                report.kept += found.kept;
            }
            Ok(report)
        })
        .await
    }
}

impl Store {
    /// Makes an existing object's name durable: on fs, syncs the directories from the
    /// object's up to the root (on other backends a confirmed write is already durable, and
    /// this does nothing). For callers that find an object already stored and take that as
    /// their write having succeeded — a retry, a spool replay — since the earlier writer may
    /// have stopped between its rename and its sync.
    ///
    /// Errors: [`StoreError::LocalIo`] when a directory cannot be synced.
    pub async fn make_durable(&self, path: &str) -> Result<()> {
        crate::path::check_object_path(path)?;
        sync_object_dirs(self.inner.fs_dirs.as_ref(), path).await
    }
}

/// Syncs, on fs, the directories of the object at `path` after its write: the object's own
/// directory and each one above it up to the store root.
pub(crate) async fn sync_object_dirs(dirs: Option<&FsDirs>, path: &str) -> Result<()> {
    let Some(dirs) = dirs else {
        return Ok(());
    };
    let root = dirs.root.clone();
    let path = path.to_owned();
    run_blocking(move || {
        for dir in object_dirs(&root, &path) {
            sync_dir(&dir).map_err(|source| StoreError::LocalIo {
                path: path.clone(),
                what: "sync of directory",
                dir: dir.clone(),
                source,
            })?;
        }
        Ok(())
    })
    .await
}

/// Syncs, on fs, the directories that deletes of `paths` changed: each object's own
/// directory, so an unlinked object does not come back after a power loss. With
/// `upwards`, each of their ancestors up to the root too (a purge also removes directories).
/// Directories that no longer exist are skipped.
pub(crate) async fn sync_after_delete(
    dirs: Option<&FsDirs>,
    paths: Vec<String>,
    upwards: bool,
) -> Result<()> {
    let Some(dirs) = dirs else {
        return Ok(());
    };
    let root = dirs.root.clone();
    run_blocking(move || {
        let mut todo: Vec<(PathBuf, &str)> = Vec::new();
        for path in &paths {
            let mut chain = object_dirs(&root, path);
            if !upwards {
                chain.truncate(1);
            }
            for dir in chain {
                if !todo.iter().any(|(seen, _)| *seen == dir) {
                    todo.push((dir, path));
                }
            }
        }
        // Deepest first, so a parent is synced after the removals inside it.
        todo.sort_by_key(|(dir, _)| std::cmp::Reverse(dir.components().count()));
        for (dir, path) in todo {
            match sync_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StoreError::LocalIo {
                        path: path.to_owned(),
                        what: "sync of directory after delete",
                        dir,
                        source,
                    });
                }
            }
        }
        Ok(())
    })
    .await
}

/// The directories to sync for object `path`, deepest first, ending with `root`.
fn object_dirs(root: &Path, path: &str) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    // The last part is the object's own name.
    parts.pop();
    while !parts.is_empty() {
        dirs.push(parts.iter().fold(root.to_path_buf(), |dir, p| dir.join(p)));
        parts.pop();
    }
    dirs.push(root.to_path_buf());
    dirs
}

/// `fsync` of a directory: makes the names in it (renames, new entries) durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

fn sweep(temp: &Path, older_than: Duration, now: SystemTime) -> Result<TempSweep> {
    let io_err = |dir: &Path, what: &'static str| {
        let dir = dir.to_path_buf();
        move |source| StoreError::LocalIo {
            path: String::new(),
            what,
            dir,
            source,
        }
    };
    let mut report = TempSweep::default();
    // A link in place of the directory would make the sweep delete wherever it points.
    crate::confine::check_own_dir(temp)?;
    let entries = match std::fs::read_dir(temp) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(io_err(temp, "listing of temporary directory")(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err(temp, "listing of temporary directory"))?;
        let file = entry.path();
        let meta = match file.symlink_metadata() {
            Ok(meta) => meta,
            // Closed (renamed away) or aborted since the listing.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io_err(&file, "stat of temporary file")(e)),
        };
        if !meta.is_file() {
            continue;
        }
        let age = meta
            .modified()
            .ok()
            .and_then(|modified| now.duration_since(modified).ok())
            .unwrap_or(Duration::ZERO);
        if age < older_than {
            report.kept += 1;
            continue;
        }
        match std::fs::remove_file(&file) {
            Ok(()) => {
                report.removed += 1;
                report.removed_bytes += meta.len();
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&file, "removal of temporary file")(e)),
        }
    }
    if report.removed > 0 {
        sync_dir(temp).map_err(io_err(temp, "sync of temporary directory"))?;
        tracing::info!(
            dir = %temp.display(),
            removed = report.removed,
            bytes = report.removed_bytes,
            kept = report.kept,
            "removed temporary files left by killed writers"
        );
    }
    Ok(report)
}

/// Runs blocking file-system work off the async threads.
pub(crate) async fn run_blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|join| {
            Err(StoreError::LocalIo {
                path: String::new(),
                what: "blocking file-system task",
                dir: PathBuf::new(),
                source: io::Error::other(join.to_string()),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_dirs_go_from_the_object_up_to_the_root() {
        let root = Path::new("/r");
        assert_eq!(
            object_dirs(root, "chunks/u/c/1.000.bin"),
            vec![
                PathBuf::from("/r/chunks/u/c"),
                PathBuf::from("/r/chunks/u"),
                PathBuf::from("/r/chunks"),
                PathBuf::from("/r"),
            ]
        );
        assert_eq!(object_dirs(root, "top"), vec![PathBuf::from("/r")]);
    }

    fn io(what: &'static str) -> impl Fn(io::Error) -> StoreError {
        move |source| StoreError::LocalIo {
            path: String::new(),
            what,
            dir: PathBuf::new(),
            source,
        }
    }

    #[tokio::test]
    async fn a_failed_directory_sync_names_the_object_and_the_directory() {
        let dirs = FsDirs {
            root: PathBuf::from("/nonexistent-chunkvault-root"),
            temp: PathBuf::from("/nonexistent-chunkvault-root/.chunkvault-tmp"),
        };
        let err = sync_object_dirs(Some(&dirs), "chunks/u/c/1.000.bin").await;
        match err {
            Err(StoreError::LocalIo {
                path, what, dir, ..
            }) => {
                assert_eq!(path, "chunks/u/c/1.000.bin");
                assert_eq!(what, "sync of directory");
                assert_eq!(
                    dir,
                    PathBuf::from("/nonexistent-chunkvault-root/chunks/u/c")
                );
            }
            other => panic!("expected LocalIo, got {other:?}"),
        }
        // Not on fs: nothing to sync.
        assert!(sync_object_dirs(None, "chunks/u/c/1.000.bin").await.is_ok());
    }

    #[tokio::test]
    // The directory syncs themselves cannot be seen from a test (strace of the CLI shows
    // them); this checks what surrounds them: writes, retries and sweeps on a real fs store.
    async fn an_fs_store_sweeps_only_old_temp_files_and_keeps_its_objects() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io("tempdir"))?;
        let store = Store::from_uri(&format!("fs://{}", dir.path().display()))?;
        store
            .put(
                "chunks/u/c/1.000.bin",
                &b"pcm"[..],
                crate::PutMode::CreateOnly,
            )
            .await?;
        // The same create-only write again: reported as existing (after a sync), untouched.
        let again = store
            .put(
                "chunks/u/c/1.000.bin",
                &b"other"[..],
                crate::PutMode::CreateOnly,
            )
            .await;
        assert!(
            matches!(again, Err(StoreError::AlreadyExists { .. })),
            "{again:?}"
        );
        assert_eq!(store.read("chunks/u/c/1.000.bin").await?, &b"pcm"[..]);
        store.make_durable("chunks/u/c/1.000.bin").await?;
        assert!(matches!(
            store.make_durable("../escape").await,
            Err(StoreError::BadPath { .. })
        ));

        // What killed writers leave: one old temp file, one of a write still going on.
        let temp = dir
            .path()
            .canonicalize()
            .map_err(io("canon"))?
            .join(crate::FS_TMP_DIR);
        let old = temp.join("killed-writer");
        std::fs::write(&old, [7u8; 100]).map_err(io("write"))?;
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .and_then(|f| f.set_modified(two_hours_ago))
            .map_err(io("set_modified"))?;
        std::fs::write(temp.join("live-writer"), [1u8; 10]).map_err(io("write"))?;

        let swept = store.sweep_fs_temp(Duration::from_secs(3600)).await?;
        assert_eq!(
            swept,
            TempSweep {
                removed: 1,
                removed_bytes: 100,
                kept: 1
            }
        );
        assert!(!old.exists());
        assert!(temp.join("live-writer").exists());
        assert_eq!(store.read("chunks/u/c/1.000.bin").await?, &b"pcm"[..]);

        // Other backends have no temp files to sweep.
        let memory = Store::from_uri("memory://")?;
        assert_eq!(
            memory.sweep_fs_temp(Duration::ZERO).await?,
            TempSweep::default()
        );
        Ok(())
    }

    #[tokio::test]
    async fn syncs_after_delete_skip_directories_that_are_gone() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io("tempdir"))?;
        std::fs::create_dir_all(dir.path().join("a/b")).map_err(io("mkdir"))?;
        let dirs = FsDirs {
            root: dir.path().to_path_buf(),
            temp: dir.path().join(crate::FS_TMP_DIR),
        };
        let paths = vec!["a/b/x".to_owned(), "gone/away/y".to_owned()];
        sync_after_delete(Some(&dirs), paths.clone(), false).await?;
        sync_after_delete(Some(&dirs), paths.clone(), true).await?;
        sync_after_delete(None, paths, true).await?;
        // Even a root that is gone has nothing left to sync.
        let missing = FsDirs {
            root: PathBuf::from("/nonexistent-chunkvault-root"),
            temp: PathBuf::from("/nonexistent-chunkvault-root/.chunkvault-tmp"),
        };
        let err = sync_after_delete(Some(&missing), vec!["a/b".to_owned()], true).await;
        assert!(
            err.is_ok(),
            "directories that are gone are skipped: {err:?}"
        );
        Ok(())
    }

    #[test]
    fn sweep_removes_old_files_and_keeps_young_ones() -> Result<()> {
        let dir = tempfile::tempdir().map_err(io("tempdir"))?;
        let write = |name: &str, len: usize| {
            std::fs::write(dir.path().join(name), vec![0u8; len]).map_err(|source| {
                StoreError::LocalIo {
                    path: name.to_owned(),
                    what: "write",
                    dir: dir.path().to_path_buf(),
                    source,
                }
            })
        };
        write("a", 10)?;
        write("b", 5)?;
        let now = SystemTime::now();
        // Seen from an hour later, both are old.
        let later = now + Duration::from_secs(3600);
        assert_eq!(
            sweep(dir.path(), Duration::from_secs(7200), later)?,
            TempSweep {
                removed: 0,
                removed_bytes: 0,
                kept: 2
            }
        );
        assert_eq!(
            sweep(dir.path(), Duration::from_secs(60), later)?,
            TempSweep {
                removed: 2,
                removed_bytes: 15,
                kept: 0
            }
        );
        assert!(std::fs::read_dir(dir.path()).is_ok_and(|mut d| d.next().is_none()));
        // A missing temp dir is nothing to sweep.
        assert_eq!(
            sweep(&dir.path().join("missing"), Duration::ZERO, now)?,
            TempSweep::default()
        );
        Ok(())
    }
}
