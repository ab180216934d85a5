//! Deleting chunks by timestamp, whole conversations, and whole users.

use chunk_format::{ObjectKind, Timestamp};
use chunk_store::{ConversationId, UserId, layout};

use crate::error::ServiceError;
use crate::service::ChunkService;
use crate::write::pack::Rewrite;

/// What a delete call removed.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct DeleteReport {
    /// Paths deleted, in listing order.
    pub deleted: Vec<String>,
    /// Packs written to replace packs that lost some chunks (written and verified before the
    /// old pack was deleted).
    pub written: Vec<String>,
}

impl ChunkService {
    /// Deletes the objects holding the chunks that start at `timestamps`.
    ///
    /// One listing per call, then one batch delete. A single-chunk object is deleted when its
    /// timestamp is requested (every object at that timestamp: `.bin` and `.opus` alike). An Omi
    /// batch is deleted when *any* requested timestamp falls within `[first, last]` — not only
    /// its start, as Omi does — because its chunks cannot be removed one by one. A pack loses
    /// exactly the chunks holding a requested instant: it is rewritten without them (new pack
    /// written create-only and read back first, then the old one deleted), or deleted when no
    /// chunk is left.
    pub async fn delete(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        timestamps: &[Timestamp],
    ) -> Result<DeleteReport, ServiceError> {
        if timestamps.is_empty() {
            return Ok(DeleteReport::default());
        }
        let listing = self.list(uid, conversation).await?;
        let mut deleted = Vec::new();
        let mut written = Vec::new();
        // Looked up once, at the first pack to rewrite.
        let mut sealing = None;
        for entry in listing.chunks {
            let hit = timestamps.iter().any(|&ts| entry.name.covers(ts));
            if !hit {
                continue;
            }
            if entry.kind == ObjectKind::Pack {
                let holds = |start: Timestamp, end: Timestamp| {
                    timestamps
                        .iter()
                        .any(|&ts| start <= ts && (ts < end || ts == start))
                };
                let sealing = match sealing {
                    Some(sealing) => sealing,
                    None => *sealing.insert(self.pack_sealing(uid).await?),
                };
                match self
                    .rewrite_pack_without(uid, conversation, &entry.path, holds, sealing)
                    .await?
                {
                    // The instants fell in gaps inside the pack: nothing to remove.
                    Rewrite::Unchanged => continue,
                    Rewrite::Emptied => {}
                    Rewrite::Written(new_path) => written.push(new_path),
                }
            }
            deleted.push(entry.path);
        }
        self.inner
            .store
            .delete_many(deleted.iter().cloned())
            .await?;
        Ok(DeleteReport { deleted, written })
    }

    /// Deletes everything under `chunks/{uid}/{conversation}/` and `audio/{uid}/{conversation}/`
    /// (foreign objects included), then lists again and fails if anything is left. `merged/`
    /// caches and other conversations — also ones whose id merely shares a prefix — are left
    /// alone.
    pub async fn delete_conversation(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
    ) -> Result<usize, ServiceError> {
        let store = &self.inner.store;
        let mut deleted = 0;
        for prefix in [
            layout::chunks_prefix(uid, conversation),
            layout::audio_prefix(uid, conversation),
        ] {
            deleted += store.purge_prefix(&prefix).await?.deleted;
        }
        Ok(deleted)
    }

    /// Deletes every object of a user under every per-user prefix (`chunks/`, `audio/`,
    /// `merged/`, `playback/`, `diagnostics/`), verifying each prefix is empty afterwards.
    /// A user whose id merely starts with `uid` is never touched (prefixes end in `/`).
    pub async fn purge_user(&self, uid: &UserId) -> Result<usize, ServiceError> {
        let store = &self.inner.store;
        let mut deleted = 0;
        for prefix in layout::user_prefixes(uid) {
            deleted += store.purge_prefix(&prefix).await?.deleted;
        }
        Ok(deleted)
    }
}
