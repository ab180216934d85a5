//! Listing: a conversation's audio objects (batch-aware, sorted, foreign objects apart) and
//! the raw files under a prefix.
//!
//! Listings stream the backend's pages (S3: 1000 keys per request) and keep only what they
//! return: a parsed entry per object, never the backend's raw entry list.

use std::cmp::Ordering;

use chunk_format::{ObjectKind, ObjectName, Timestamp};
use futures::TryStreamExt;

use crate::error::{Result, StoreError, StoreOp};
use crate::layout::{ConversationId, UserId, chunks_prefix};
use crate::path::{FS_TMP_DIR, check_prefix};
use crate::store::Store;

/// An audio object of a conversation: its parsed name, full path and size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// The parsed name (kind, start, range end).
    pub name: ObjectName,
    /// The full object path, `chunks/{uid}/{conv}/{name}`.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

impl ListedObject {
    /// The kind its extension says.
    pub fn kind(&self) -> ObjectKind {
        self.name.kind()
    }

    /// The start timestamp (a batch's first chunk, a pack's start).
    pub fn start(&self) -> Timestamp {
        self.name.start()
    }

    /// Whether the object may hold several chunks (Omi batches, packs).
    pub fn is_batch(&self) -> bool {
        self.name.is_batch()
    }

    /// The listing order: by start, then by path (byte order). For one start this puts
    /// `TS-END.batch.bin` (`-` sorts before `.`) before `TS.bin` before `TS.enc` before
    /// `TS.opus`, the order Omi's GCS listing (lexicographic) and stable sort produce.
    pub fn listing_order(&self, other: &ListedObject) -> Ordering {
        self.start()
            .cmp(&other.start())
            .then_with(|| self.path.cmp(&other.path))
    }
}

/// Something under a conversation's prefix that is not an audio object: a name the codec
/// rejects (`notes.txt`, `1000.000.meta.json`, `abc.bin`) or a nested prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignObject {
    /// The full path (nested prefixes end with `/`).
    pub path: String,
    /// Size in bytes (0 for a nested prefix).
    pub size: u64,
    /// Why it is not audio.
    pub reason: String,
}

/// A conversation's listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Audio objects, sorted by [`ListedObject::listing_order`].
    pub objects: Vec<ListedObject>,
    /// Everything else directly under the prefix, sorted by path.
    pub foreign: Vec<ForeignObject>,
}

/// Everything under a prefix, recursively: [`Store::list_prefix`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrefixListing {
    /// Every object, as `(path, size)`, sorted by path.
    pub objects: Vec<(String, u64)>,
    /// On fs, the links and special files found (never followed, never removed), sorted by
    /// path.
    pub foreign: Vec<ForeignObject>,
}

/// One thing a listing found.
pub(crate) enum Found {
    /// An object with its size.
    File { path: String, size: u64 },
    /// A directory / common prefix (fs directories, S3 common prefixes).
    Dir { path: String },
    /// On fs, something that is neither a regular file nor a directory: a symbolic link
    /// (never followed), a FIFO, socket or device. Never read, descended into or removed.
    Special { path: String, found: &'static str },
}

/// Streams the entries under a prefix, resolving sizes the listing did not carry.
pub(crate) struct PrefixLister<'a> {
    store: &'a Store,
    prefix: String,
    lister: opendal::Lister,
}

impl<'a> PrefixLister<'a> {
    pub(crate) async fn new(store: &'a Store, prefix: &str, recursive: bool) -> Result<Self> {
        store.confine_prefix(prefix)?;
        let lister = store
            .inner
            .op
            .lister_with(prefix)
            .recursive(recursive)
            .await
            .map_err(|err| StoreError::backend(StoreOp::List, prefix, err))?;
        Ok(Self {
            store,
            prefix: prefix.to_owned(),
            lister,
        })
    }

    /// The next entry strictly below the prefix, or `None` at the end. The prefix itself and
    /// the fs backend's in-progress-write directory are skipped.
    pub(crate) async fn next(&mut self) -> Result<Option<Found>> {
        loop {
            let Some(entry) = self
                .lister
                .try_next()
                .await
                .map_err(|err| StoreError::backend(StoreOp::List, &self.prefix, err))?
            else {
                return Ok(None);
            };
            let (path, meta) = entry.into_parts();
            if path == self.prefix || path.is_empty() || path == "/" {
                continue;
            }
            if path.split('/').next() == Some(FS_TMP_DIR) {
                continue;
            }
            match meta.mode() {
                opendal::EntryMode::FILE => {
                    return Ok(Some(Found::File {
                        size: meta.content_length(),
                        path,
                    }));
                }
                opendal::EntryMode::DIR => return Ok(Some(Found::Dir { path })),
                // A backend that lists bare keys (OpenDAL normally completes these itself).
                opendal::EntryMode::Unknown => {
                    // OpenDAL's fs lister reads the entry type without following links, so
                    // what it cannot name is a link or a special file: report it, never stat
                    // through it.
                    if let Some(root) = self.store.fs_root() {
                        let local = root.join(path.trim_end_matches('/'));
                        let found = match crate::confine::entry_type(&local) {
                            Ok(crate::confine::EntryType::Missing) => continue,
                            Ok(found) => found.describe(),
                            Err(_) => "unreadable",
                        };
                        return Ok(Some(Found::Special {
                            path: path.trim_end_matches('/').to_owned(),
                            found,
                        }));
                    }
                    let meta = self
                        .store
                        .inner
                        .op
                        .stat(&path)
                        .await
                        .map_err(|err| StoreError::from_read(StoreOp::Stat, &path, err));
                    match meta {
                        Ok(meta) if meta.is_dir() => return Ok(Some(Found::Dir { path })),
                        Ok(meta) => {
                            return Ok(Some(Found::File {
                                size: meta.content_length(),
                                path,
                            }));
                        }
                        // Deleted between the listing and the stat: no longer there.
                        Err(StoreError::NotFound { .. }) => continue,
                        Err(err) => return Err(err),
                    }
                }
            }
        }
    }
}

impl Store {
    /// Lists the audio objects of a conversation (`chunks/{uid}/{conv}/`, direct children
    /// only: `conv-e2` is never part of `conv-e`), every name parsed by
    /// [`chunk_format::ObjectName`], sorted by [`ListedObject::listing_order`]. Everything else
    /// under the prefix is returned in [`Listing::foreign`] with the reason, never dropped.
    ///
    /// One listing, paged by the backend. (The memory backend lists bare keys; OpenDAL stats
    /// each entry for its size, below the counting layer.)
    pub async fn list_conversation(&self, uid: &UserId, conv: &ConversationId) -> Result<Listing> {
        let prefix = chunks_prefix(uid, conv);
        let mut lister = PrefixLister::new(self, &prefix, false).await?;
        let mut listing = Listing::default();
        while let Some(found) = lister.next().await? {
            let (path, size, nested) = match found {
                Found::File { path, size } => (path, size, false),
                Found::Dir { path } => (path, 0, true),
                Found::Special { path, found } => {
                    listing.foreign.push(ForeignObject {
                        reason: format!("{found}: not an object"),
                        path,
                        size: 0,
                    });
                    continue;
                }
            };
            let Some(name) = path.strip_prefix(&prefix) else {
                listing.foreign.push(ForeignObject {
                    reason: format!("listed outside the prefix {prefix:?}"),
                    path,
                    size,
                });
                continue;
            };
            if nested {
                listing.foreign.push(ForeignObject {
                    reason: "nested prefix: audio objects sit directly under the conversation"
                        .to_owned(),
                    path,
                    size,
                });
                continue;
            }
            match name.parse::<ObjectName>() {
                Ok(name) => listing.objects.push(ListedObject { name, path, size }),
                Err(err) => listing.foreign.push(ForeignObject {
                    reason: err.to_string(),
                    path,
                    size,
                }),
            }
        }
        listing.objects.sort_by(ListedObject::listing_order);
        listing.foreign.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(listing)
    }

    /// Lists every object under `prefix`, recursively, sorted by path. Directory entries
    /// (fs) are skipped; on fs, links and special files come back apart in
    /// [`PrefixListing::foreign`] (never followed). `prefix` must end with `/`, or be empty for
    /// the whole bucket.
    pub async fn list_prefix(&self, prefix: &str) -> Result<PrefixListing> {
        check_prefix(prefix, true)?;
        let mut lister = PrefixLister::new(self, prefix, true).await?;
        let mut listing = PrefixListing::default();
        while let Some(found) = lister.next().await? {
            match found {
                Found::File { path, size } => listing.objects.push((path, size)),
                Found::Dir { .. } => {}
                Found::Special { path, found } => listing.foreign.push(ForeignObject {
                    reason: format!("{found}: not an object"),
                    path,
                    size: 0,
                }),
            }
        }
        listing.objects.sort();
        listing.foreign.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(listing)
    }
}
