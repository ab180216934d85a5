//! Checking one stored object: read it and decode all of it as its name says, with the read
//! path's own rules (the limit on decoded pieces, sealing required by level, the pack's name
//! against its index), holding one decoded chunk at a time.

use chunk_format::{ObjectKind, ObjectName};
use chunk_store::{ConversationId, UserId};

use crate::error::{DecodeError, ServiceError};
use crate::read::decode::{decode_omi_object, on_blocking};
use crate::read::policy::OpenFor;
use crate::service::ChunkService;

/// What [`ChunkService::check_object`] found in a good object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ObjectCheck {
    /// Chunks (pack chunks, Omi frames; 1 for a raw or Opus object) decoded.
    pub chunks: usize,
    /// PCM bytes they decode to.
    pub pcm_bytes: u64,
    /// Whether the object is sealed (a sealed pack, an Omi `.enc` kind).
    pub sealed: bool,
}

impl ChunkService {
    /// Reads the object at `path` (named `name`, `size` bytes as listed) of user `uid`'s
    /// conversation `conversation` (a version-2 pack opens only at its own place) and
    /// decodes every chunk, as a download would: a pack's index, authentication or CRC-32C of
    /// every frame, and its name against the index; an Omi object opened with the user's key
    /// and decoded. Fails with the reason the object is bad: empty, undecodable, sealed without
    /// the key, a plaintext pack where sealing is required ([`ServiceError::Unsealed`]), a
    /// piece claiming more than the decode limit ([`ServiceError::TooLarge`]). Decoding runs
    /// on a blocking thread.
    pub async fn check_object(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        path: &str,
        name: &ObjectName,
        size: u64,
    ) -> Result<ObjectCheck, ServiceError> {
        if name.kind() == ObjectKind::Pack {
            let sealing = self.pack_sealing(uid).await?;
            let pack = self
                .read_pack_stored(uid, conversation, path, sealing, OpenFor::Reading, size)
                .await?;
            return on_blocking(path, move || {
                let mut pcm_bytes = 0;
                for i in 0..pack.len() {
                    pcm_bytes += pack.decode(i)?.len() as u64;
                }
                Ok(ObjectCheck {
                    chunks: pack.len(),
                    pcm_bytes,
                    sealed: pack.sealed(),
                })
            })
            .await;
        }
        self.check_omi_size(path, name.kind(), size)?;
        // `size` was bounded by `check_omi_size` above.
        let bytes = self.inner.store.read_sized(path, size).await?;
        if bytes.is_empty() {
            return Err(ServiceError::decode(path, DecodeError::Empty));
        }
        let key = self.omi_key(uid)?;
        let limit = self.inner.config.max_decoded_chunk as u64;
        let kind = name.kind();
        let owned_path = path.to_owned();
        let pieces = on_blocking(path, move || {
            decode_omi_object(&owned_path, kind, bytes, key.as_ref(), limit)
        })
        .await?;
        Ok(ObjectCheck {
            chunks: pieces.len(),
            pcm_bytes: pieces.iter().map(|p| p.len() as u64).sum(),
            sealed: kind.is_encrypted(),
        })
    }
}
