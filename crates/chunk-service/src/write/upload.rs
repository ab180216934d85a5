//! Single and batch uploads (Omi's `upload_audio_chunk` and `upload_audio_chunks_batch`, fixed).

use bytes::Bytes;
use chunk_crypto::UserKey;
use chunk_format::span::OmiSpan;
use chunk_format::{ObjectKind, ObjectName, Timestamp};
use chunk_store::{ConversationId, PutMode, StoreError, UserId, UserMetadata, layout};

use crate::config::{BatchLayout, SingleFormat};
use crate::error::ServiceError;
use crate::level::ProtectionLevel;
use crate::service::ChunkService;

/// One chunk of audio to upload: its start and its PCM16LE mono bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// When the chunk's audio starts.
    pub timestamp: Timestamp,
    /// The audio (for `e2ee` users: the client-sealed payload, stored as given).
    pub pcm: Bytes,
}

impl Chunk {
    /// A chunk starting at `timestamp`.
    pub fn new(timestamp: Timestamp, pcm: impl Into<Bytes>) -> Chunk {
        Chunk {
            timestamp,
            pcm: pcm.into(),
        }
    }
}

/// Who protects an uploaded object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sealing {
    /// Stored in plaintext (`standard`).
    Plaintext,
    /// Sealed by this service with the user's key (`enhanced`).
    Service,
    /// Stored as the client gave it (`e2ee`): the service did not seal it and cannot vouch for
    /// it being sealed.
    ClientSealed,
}

impl Sealing {
    fn for_level(level: ProtectionLevel) -> Sealing {
        match level {
            ProtectionLevel::Standard => Sealing::Plaintext,
            ProtectionLevel::Enhanced => Sealing::Service,
            ProtectionLevel::E2ee => Sealing::ClientSealed,
        }
    }
}

/// Options of one upload call ([`ChunkService::upload_chunk`],
/// [`ChunkService::upload_batch`], [`ChunkService::upload_spanned_batch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct UploadOptions {
    /// The user's protection level, when the caller has it cached; `None` (the default) makes
    /// one user-database lookup per call.
    pub level: Option<ProtectionLevel>,
}

impl UploadOptions {
    /// Options for a caller that knows the user's level: no user-database lookup.
    pub fn at_level(level: ProtectionLevel) -> UploadOptions {
        UploadOptions::with_level(Some(level))
    }

    /// Options with the level the caller may have cached (`None`: look it up).
    pub fn with_level(level: Option<ProtectionLevel>) -> UploadOptions {
        UploadOptions { level }
    }
}

/// What an upload call did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UploadReport {
    /// Object paths holding the uploaded audio, in timestamp order.
    pub paths: Vec<String>,
    /// The level the call used (`None` for an empty batch, which resolves nothing).
    pub level: Option<ProtectionLevel>,
    /// Who protects the objects.
    pub sealing: Option<Sealing>,
    /// Objects actually written (an identical retry writes nothing).
    pub objects_written: usize,
}

impl UploadReport {
    /// The report of a call that stored its audio in the one object `path` at `level`;
    /// `written` is false when an identical object was already there.
    fn one_object(path: String, level: ProtectionLevel, written: bool) -> Self {
        Self {
            paths: vec![path],
            level: Some(level),
            sealing: Some(Sealing::for_level(level)),
            objects_written: usize::from(written),
        }
    }
}

impl ChunkService {
    /// Uploads one chunk as its own object: `TS.bin`, or `TS.enc` for `enhanced` users; with
    /// [`SingleFormat::Opus`], `TS.opus` / `TS.opus.enc` as Omi's current code writes them.
    ///
    /// `options.level`: pass the level when the caller has it cached; `None` makes one user-database
    /// lookup. Writing is create-only: a retry with identical audio is a no-op, different audio
    /// under an existing name is [`ServiceError::Conflict`].
    pub async fn upload_chunk(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        chunk: Chunk,
        options: UploadOptions,
    ) -> Result<UploadReport, ServiceError> {
        let level = options.level;
        let level = self.resolve_level(uid, level).await?;
        let key = self.sealing_key(uid, level)?;
        let (path, written) = self
            .write_single(uid, conversation, &chunk, key.as_ref())
            .await?;
        Ok(UploadReport::one_object(path, level, written))
    }

    /// Uploads a batch of chunks as one object: a pack by default, or Omi's batch layout.
    ///
    /// - an empty batch does no I/O at all (not even a level lookup);
    /// - chunks are sorted by timestamp, stably (equal timestamps keep their order);
    /// - the level is resolved once per call (zero lookups when `options.level` is given);
    /// - with [`BatchLayout::Pack`] (the default), one `START-END.pack` (sealed for `enhanced`
    ///   users), chunks in time order without overlap (else [`ServiceError::InvalidInput`]);
    /// - with [`BatchLayout::Omi`], one object `TS.batch.{bin,enc}` for one chunk, `FIRST-LAST.batch.{bin,enc}` for more
    ///   (also when first and last format identically), streamed with one write per chunk: raw
    ///   PCM concatenated, or one Omi frame per chunk for `enhanced` users;
    /// - with [`BatchLayout::PerChunk`], one object per chunk in timestamp order, level still
    ///   resolved once;
    /// - create-only: an identical retry is a no-op, a different body under an existing name is
    ///   [`ServiceError::Conflict`]; a failed write leaves no object.
    pub async fn upload_batch(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        mut chunks: Vec<Chunk>,
        options: UploadOptions,
    ) -> Result<UploadReport, ServiceError> {
        let level = options.level;
        if chunks.is_empty() {
            return Ok(UploadReport {
                paths: Vec::new(),
                level: None,
                sealing: None,
                objects_written: 0,
            });
        }
        chunks.sort_by_key(|chunk| chunk.timestamp);
        let level = self.resolve_level(uid, level).await?;
        let key = self.sealing_key(uid, level)?;
        let mut report = UploadReport {
            paths: Vec::with_capacity(1),
            level: Some(level),
            sealing: Some(Sealing::for_level(level)),
            objects_written: 0,
        };
        match self.inner.config.batch_layout {
            BatchLayout::Pack => {
                let (path, written) = self.write_pack(uid, conversation, &chunks, level).await?;
                report.paths.push(path);
                report.objects_written += usize::from(written);
            }
            BatchLayout::Omi => {
                let (path, written) = self
                    .write_omi_batch(uid, conversation, &chunks, key.as_ref(), None)
                    .await?;
                report.paths.push(path);
                report.objects_written += usize::from(written);
            }
            BatchLayout::PerChunk => {
                for chunk in &chunks {
                    let (path, written) = self
                        .write_single(uid, conversation, chunk, key.as_ref())
                        .await?;
                    report.paths.push(path);
                    report.objects_written += usize::from(written);
                }
            }
        }
        tracing::debug!(
            uid = %uid,
            conversation = %conversation,
            chunks = chunks.len(),
            paths = ?report.paths,
            "batch uploaded"
        );
        Ok(report)
    }

    async fn write_single(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        chunk: &Chunk,
        key: Option<&UserKey>,
    ) -> Result<(String, bool), ServiceError> {
        let (kind, body) = match (self.inner.config.single_format, key.is_some()) {
            (SingleFormat::Pcm, false) => (ObjectKind::Bin, chunk.clone()),
            (SingleFormat::Pcm, true) => (ObjectKind::Enc, chunk.clone()),
            (SingleFormat::Opus, sealed) => {
                let container = crate::codec::opus::encode_omi_opus(&chunk.pcm).map_err(|e| {
                    ServiceError::InvalidInput(format!("Opus encoding of {}: {e}", chunk.timestamp))
                })?;
                let kind = if sealed {
                    ObjectKind::OpusEnc
                } else {
                    ObjectKind::Opus
                };
                (kind, Chunk::new(chunk.timestamp, container))
            }
        };
        let name = ObjectName::single(chunk.timestamp, kind).map_err(invalid)?;
        self.write_object(
            uid,
            conversation,
            &name,
            std::slice::from_ref(&body),
            key,
            None,
        )
        .await
    }

    /// Uploads a batch as one Omi batch object carrying Omi's v2 span metadata
    /// (`v2_start`, `v2_samples`, `v2_sample_rate`, `omi-layout.md` §1.4), as Omi's newest
    /// batch upload writes it when its chunks carry a span: the authoritative timing that
    /// Omi's span-mode download (and chunkvault's) places the audio by.
    ///
    /// Named and written as [`BatchLayout::Omi`] does, whatever the configured layout (packs
    /// time every chunk exactly and need no span). `span.samples` must be the batch's sample
    /// count (its bytes / 2; not checked for `e2ee` users, whose payload is opaque).
    ///
    /// Create-only, like every write: an identical retry (same audio, same span) writes
    /// nothing; different audio or a different span under the name is
    /// [`ServiceError::Conflict`], never an overwrite (Omi overwrites legacy batches). On a
    /// store that keeps no metadata (fs, memory) it fails with
    /// [`chunk_store::StoreError::MetadataUnsupported`] and writes nothing.
    pub async fn upload_spanned_batch(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        mut chunks: Vec<Chunk>,
        span: OmiSpan,
        options: UploadOptions,
    ) -> Result<UploadReport, ServiceError> {
        let level = options.level;
        if chunks.is_empty() {
            return Err(ServiceError::InvalidInput(
                "a span needs audio: empty batch".to_owned(),
            ));
        }
        chunks.sort_by_key(|chunk| chunk.timestamp);
        let level = self.resolve_level(uid, level).await?;
        let bytes: u64 = chunks.iter().map(|c| c.pcm.len() as u64).sum();
        if level != ProtectionLevel::E2ee && span.pcm_bytes() != bytes {
            return Err(ServiceError::InvalidInput(format!(
                "span of {} samples for a batch of {bytes} bytes ({} samples of PCM16 mono)",
                span.samples,
                bytes / 2
            )));
        }
        let key = self.sealing_key(uid, level)?;
        let (path, written) = self
            .write_omi_batch(uid, conversation, &chunks, key.as_ref(), Some(span))
            .await?;
        Ok(UploadReport::one_object(path, level, written))
    }

    async fn write_omi_batch(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        chunks: &[Chunk],
        key: Option<&UserKey>,
        span: Option<OmiSpan>,
    ) -> Result<(String, bool), ServiceError> {
        let (Some(first), Some(last)) = (chunks.first(), chunks.last()) else {
            return Err(ServiceError::InvalidInput("empty batch".to_owned()));
        };
        let name = ObjectName::batch(first.timestamp, last.timestamp, chunks.len(), key.is_some())
            .map_err(invalid)?;
        self.write_object(uid, conversation, &name, chunks, key, span)
            .await
    }

    /// Writes `chunks` as the body of `name` (one write per chunk), create-only, with `span`
    /// as its metadata. Returns the path and whether an object was written (false: an
    /// identical object, span included, was already there).
    async fn write_object(
        &self,
        uid: &UserId,
        conversation: &ConversationId,
        name: &ObjectName,
        chunks: &[Chunk],
        key: Option<&UserKey>,
        span: Option<OmiSpan>,
    ) -> Result<(String, bool), ServiceError> {
        let store = &self.inner.store;
        let path = layout::chunk_path(uid, conversation, name);
        let metadata: Option<UserMetadata> = span.map(|span| {
            span.metadata()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect()
        });
        // A cheap probe first, so an identical retry costs a stat and a read, not a rewrite.
        if store.stat(&path).await?.is_some() {
            self.verify_existing(&path, chunks, key, span).await?;
            // Found, not written: its writer may have died between rename and sync.
            store.make_durable(&path).await?;
            return Ok((path, false));
        }
        let result = async {
            let mut writer = match &metadata {
                Some(metadata) => {
                    store
                        .writer_with_metadata(&path, PutMode::CreateOnly, metadata)
                        .await?
                }
                None => store.writer(&path, PutMode::CreateOnly).await?,
            };
            for chunk in chunks {
                let body = match key {
                    Some(key) => {
                        let mut frame = Vec::with_capacity(chunk.pcm.len() + 32);
                        chunk_crypto::omi::seal_frame(key, &chunk.pcm, &mut frame).map_err(
                            |source| ServiceError::Crypto {
                                path: path.clone(),
                                source,
                            },
                        )?;
                        Bytes::from(frame)
                    }
                    None => chunk.pcm.clone(),
                };
                writer.write(body).await?;
            }
            writer.close().await?;
            Ok::<(), ServiceError>(())
        }
        .await;
        match result {
            Ok(()) => Ok((path, true)),
            // Lost a race with another writer of the same name: same rule as the probe.
            Err(ServiceError::Store(StoreError::AlreadyExists { .. })) => self
                .verify_existing(&path, chunks, key, span)
                .await
                .map(|()| (path, false)),
            Err(other) => Err(other),
        }
    }

    /// Succeeds if the object at `path` holds exactly `chunks` (decrypting when sealed) and,
    /// for a spanned write, carries exactly `span`; otherwise [`ServiceError::Conflict`].
    async fn verify_existing(
        &self,
        path: &str,
        chunks: &[Chunk],
        key: Option<&UserKey>,
        span: Option<OmiSpan>,
    ) -> Result<(), ServiceError> {
        if let Some(span) = span {
            let store = &self.inner.store;
            let existing_span = store.stat_meta(path).await?.and_then(|meta| {
                OmiSpan::from_metadata(|key| meta.user.get(key).map(String::as_str))
            });
            if existing_span != Some(span) {
                tracing::debug!(path, ?existing_span, "stored span differs");
                return Err(ServiceError::Conflict {
                    path: path.to_owned(),
                });
            }
        }
        let existing = self.inner.store.read(path).await?;
        let identical = match key {
            None => {
                let expected_len: usize = chunks.iter().map(|c| c.pcm.len()).sum();
                existing.len() == expected_len && {
                    let mut offset = 0;
                    chunks.iter().all(|chunk| {
                        let end = offset + chunk.pcm.len();
                        let same = existing.get(offset..end) == Some(&chunk.pcm[..]);
                        offset = end;
                        same
                    })
                }
            }
            Some(key) => {
                let mut frames = chunk_crypto::omi::open_object(key, &existing);
                let all_match = chunks.iter().all(
                    |chunk| matches!(frames.next(), Some(Ok(plain)) if plain[..] == chunk.pcm[..]),
                );
                all_match && frames.next().is_none()
            }
        };
        if identical {
            tracing::debug!(path, "identical object already stored; nothing written");
            Ok(())
        } else {
            Err(ServiceError::Conflict {
                path: path.to_owned(),
            })
        }
    }
}

fn invalid(error: chunk_format::NameError) -> ServiceError {
    ServiceError::InvalidInput(error.to_string())
}
