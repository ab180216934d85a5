//! Listing a conversation: every audio object parsed by the one name codec, foreign ones apart.

use chunk_format::{ObjectKind, ObjectName, Timestamp};
use chunk_store::{ConversationId, UserId};

use crate::{ChunkService, ServiceError};

/// One audio object of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ListEntry {
    /// Start of its audio (a batch's first chunk, a pack's first chunk).
    pub start: Timestamp,
    /// The end its name records: for a batch the *start* of its last chunk, for a pack the end
    /// of its audio (exclusive), for single-chunk objects the start.
    pub end: Timestamp,
    /// Object path from the bucket root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Whether it may hold several chunks (Omi batch or pack).
    pub is_batch: bool,
    /// Its kind, as the extension says.
    pub kind: ObjectKind,
    /// The parsed name.
    #[serde(skip)]
    pub name: ObjectName,
}

/// An object under the conversation's prefix that is not audio.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ForeignEntry {
    /// Object path from the bucket root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Why its name is not an audio name.
    pub reason: String,
}

/// A conversation's objects: audio sorted by start, foreign objects reported apart.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct ConversationListing {
    /// Audio objects, sorted by start (ties in path order, as Omi lists them).
    pub chunks: Vec<ListEntry>,
    /// Every other object under `chunks/{uid}/{conversation}/`.
    pub foreign: Vec<ForeignEntry>,
}

impl ChunkService {
    /// Lists a conversation with one paged listing of `chunks/{uid}/{conversation}/`.
    pub async fn list(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
    ) -> Result<ConversationListing, ServiceError> {
        let listing = self
            .inner
            .store
            .list_conversation(uid, conversation)
            .await?;
        Ok(ConversationListing {
            chunks: listing
                .objects
                .into_iter()
                .map(|object| ListEntry {
                    start: object.name.start(),
                    end: object.name.end(),
                    path: object.path,
                    size: object.size,
                    is_batch: object.name.is_batch(),
                    kind: object.name.kind(),
                    name: object.name,
                })
                .collect(),
            foreign: listing
                .foreign
                .into_iter()
                .map(|object| ForeignEntry {
                    path: object.path,
                    size: object.size,
                    reason: object.reason,
                })
                .collect(),
        })
    }
}
