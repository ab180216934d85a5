//! Listing a conversation: every audio object parsed by the one name codec, foreign ones apart.

use chunk_format::span::OmiSpan;
use chunk_format::{ObjectKind, ObjectName, Timestamp};
use chunk_store::{ConversationId, UserId};
use futures::stream::{self, StreamExt};

use crate::error::ServiceError;
use crate::service::ChunkService;

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
    /// Omi's v2 span from the object's metadata (Omi batches only): its authoritative start,
    /// sample count and rate. Filled by [`ChunkService::list_with_spans`]; `None` from
    /// [`ChunkService::list`], for objects without one, and on stores that keep no metadata.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub span: Option<OmiSpan>,
    /// The parsed name.
    #[serde(skip)]
    pub name: ObjectName,
}

impl ListEntry {
    /// Whether Omi's readers look for span metadata on this object: Omi's batch upload is the
    /// only writer of spans.
    pub(crate) fn may_have_span(&self) -> bool {
        matches!(self.kind, ObjectKind::BatchBin | ObjectKind::BatchEnc)
    }

    /// Where the span says the audio starts, in whole ms (Omi's `'%.3f'` rounding), if the
    /// object has a span that a timestamp can hold.
    pub(crate) fn span_start_ms(&self) -> Option<u64> {
        let span = self.span?;
        Timestamp::from_f64(span.start).ok().map(|t| t.as_millis())
    }

    /// An upper bound on the object's audio duration in milliseconds, from its listing alone
    /// (Omi objects at `omi_rate`): the one duration bound downloads select by and compaction
    /// groups by.
    pub(crate) fn max_duration_ms(&self, omi_rate: u32) -> u64 {
        match self.kind {
            // Opus packets take at least 3 bytes (2 length + 1) per 20 ms.
            ObjectKind::Opus | ObjectKind::OpusEnc => self.size.div_ceil(3) * 20,
            ObjectKind::Pack => self.end.millis_since(self.start).max(0) as u64,
            // PCM (or sealed PCM, which is larger than its plaintext): size / (2 * rate) s.
            _ => u64::try_from((u128::from(self.size) * 1000).div_ceil(u128::from(omi_rate) * 2))
                .unwrap_or(u64::MAX),
        }
    }

    /// An upper bound on where the object's audio ends, in ms (Omi objects at `omi_rate`): a
    /// pack's END; otherwise the later of START and END (a batch's END is its last chunk's
    /// start) plus [`ListEntry::max_duration_ms`].
    pub(crate) fn end_bound_ms(&self, omi_rate: u32) -> u64 {
        match self.kind {
            ObjectKind::Pack => self.end.as_millis(),
            _ => self
                .end
                .as_millis()
                .max(self.start.as_millis())
                .saturating_add(self.max_duration_ms(omi_rate)),
        }
    }
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
    /// [`ChunkService::list`], with each Omi batch's v2 span read from its metadata
    /// (`omi-layout.md` §1.4): one stat per `.batch.*` object, `download_concurrency` at a
    /// time, on stores that keep metadata (S3, GCS, Azure); on fs and memory it is
    /// [`ChunkService::list`] exactly. Spans that do not parse are no span, as in Omi.
    pub async fn list_with_spans(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
    ) -> Result<ConversationListing, ServiceError> {
        let mut listing = self.list(uid, conversation).await?;
        self.read_spans(listing.chunks.iter_mut()).await?;
        Ok(listing)
    }

    /// Fills the span of every entry that may have one (one stat each), on stores that keep
    /// metadata. An object gone since the listing keeps no span.
    pub(crate) async fn read_spans<'a>(
        &self,
        entries: impl Iterator<Item = &'a mut ListEntry>,
    ) -> Result<(), ServiceError> {
        let store = &self.inner.store;
        if !store.supports_user_metadata() {
            return Ok(());
        }
        let concurrency = self.inner.config.download_concurrency.get();
        let results: Vec<Result<(), ServiceError>> =
            stream::iter(entries.filter(|e| e.may_have_span()))
                .map(|entry| async move {
                    let meta = store.stat_meta(&entry.path).await?;
                    entry.span = meta.and_then(|meta| {
                        OmiSpan::from_metadata(|key| meta.user.get(key).map(String::as_str))
                    });
                    Ok(())
                })
                .buffer_unordered(concurrency)
                .collect()
                .await;
        results.into_iter().collect()
    }

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
                    span: None,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, size: u64) -> ListEntry {
        let name: ObjectName = name.parse().unwrap();
        ListEntry {
            start: name.start(),
            end: name.end(),
            path: name.to_string(),
            size,
            is_batch: name.kind().is_batch(),
            kind: name.kind(),
            span: None,
            name,
        }
    }

    #[test]
    fn duration_bounds_follow_the_omi_rate() {
        // 5 s of PCM16 mono: 160,000 bytes at 16 kHz, 80,000 at 8 kHz.
        let single = entry("1000.000.bin", 160_000);
        assert_eq!(single.max_duration_ms(16_000), 5_000);
        assert_eq!(single.max_duration_ms(8_000), 10_000);
        assert_eq!(single.end_bound_ms(8_000), 1_010_000);
        // A batch's END is its last chunk's start; the bound adds the whole object.
        let batch = entry("1000.000-1055.000.batch.bin", 60 * 16_000);
        assert_eq!(batch.end_bound_ms(8_000), 1_055_000 + 60_000);
        // A pack's END is exact.
        let pack = entry("1000.000-1060.000.pack", 1);
        assert_eq!(pack.end_bound_ms(8_000), 1_060_000);
        assert_eq!(pack.max_duration_ms(48_000), 60_000);
    }
}
