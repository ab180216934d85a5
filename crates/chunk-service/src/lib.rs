//! chunkvault's storage behaviour over a store: Omi-compatible upload, batch upload, list,
//! delete, download-and-merge, conversation delete and user purge — with Omi's bugs fixed —
//! plus compaction, the recorder, and a timeline audit (`audit`: covered time, gaps, overlaps,
//! duplicates, undecodable objects) built on the download's own placement.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use chunk_crypto::{KeyId, Keyring, MasterSecret};
//! use chunk_format::Timestamp;
//! use chunk_service::{
//!     Chunk, ChunkService, DownloadOptions, DownloadRequest, ProtectionLevel, UploadOptions,
//! };
//! use chunk_store::{ConversationId, Store, UserId};
//!
//! let store = Store::from_uri("memory://")?; // or fs:///var/lib/audio, s3://bucket, gcs://…
//! let keyring = Keyring::single(KeyId::new(1), MasterSecret::new(b"omi_".repeat(16))?);
//! let service = ChunkService::builder(store)
//!     .keyring(keyring)
//!     .default_level(ProtectionLevel::Enhanced)
//!     .build()?;
//!
//! let (uid, conv) = (UserId::new("user-1")?, ConversationId::new("conv-1")?);
//! let t0 = Timestamp::from_f64(1786961845.727)?;
//! let chunks = vec![Chunk::new(t0, vec![0u8; 160_000])];
//! service.upload_batch(&uid, &conv, chunks, UploadOptions::default()).await?;
//!
//! let request = DownloadRequest::Timestamps(vec![t0]);
//! let pcm = service.download(&uid, &conv, &request, DownloadOptions::default()).await?;
//! assert_eq!(pcm.collect_vec().await?.len(), 160_000);
//!
//! // What the conversation holds: covered time, gaps, overlaps, duplicates, bad objects.
//! let audit = service.audit(&uid, &conv, Default::default()).await?;
//! assert!(audit.gaps.is_empty() && !audit.has_undecodable());
//! # Ok(()) }
//! ```
//!
//! Laid out along the data path (docs/ARCHITECTURE.md, "Service"). Where each operation lives:
//!
//! | operation | file |
//! |---|---|
//! | [`upload_chunk`](ChunkService::upload_chunk), [`upload_batch`](ChunkService::upload_batch), [`upload_spanned_batch`](ChunkService::upload_spanned_batch) | `write/upload.rs` (packs: `write/pack.rs`) |
//! | [`list`](ChunkService::list), [`list_with_spans`](ChunkService::list_with_spans) | `read/list.rs` |
//! | [`download`](ChunkService::download) ([`PcmStream`], [`MergeReport`]) | `read/download.rs`, placed by `read/timeline.rs` |
//! | [`check_object`](ChunkService::check_object) | `read/check.rs` |
//! | [`audit`](ChunkService::audit), [`audit_user`](ChunkService::audit_user) | `read/audit.rs` |
//! | [`delete`](ChunkService::delete), [`delete_conversation`](ChunkService::delete_conversation), [`purge_user`](ChunkService::purge_user) | `delete.rs` |
//! | [`plan_compaction`](ChunkService::plan_compaction), [`compact`](ChunkService::compact) | `compact.rs`, placed by the download's own pipeline (`read/download.rs`) |
//! | [`Recorder`] (live streams, the durable [`spool`]) | `recorder/`, `spool/` |
//!
//! Where Omi's behaviour is wrong this crate is right on purpose (docs/COMPATIBILITY.md):
//! batches are found by any timestamp in their range (not only their start), a timestamp listed
//! twice is used once, timestamps match at millisecond precision, odd byte counts are trimmed
//! per chunk, and `e2ee` payloads are reported as client-sealed rather than silently stored as
//! if protected.

mod builder;
pub mod codec;
mod compact;
mod config;
mod delete;
mod error;
mod level;
mod read;
mod recorder;
mod service;
pub mod spool;
mod write;

pub use builder::ChunkServiceBuilder;
pub use compact::{
    CompactionCost, CompactionGroup, CompactionOptions, CompactionPlan, CompactionReport,
    KeyRotation,
};
pub use config::{
    BatchLayout, DEFAULT_MAX_DECODED_CHUNK, EncryptionPolicy, ServiceConfig, SingleFormat,
};
pub use delete::DeleteReport;
pub use error::{DecodeError, ServiceError};
pub use level::{
    InMemoryLevels, LevelLookupError, ProtectionLevel, ProtectionLevels, UnknownLevel,
};
pub use read::audit::{AuditOptions, ConversationAudit, Duplicate, NameMismatch};
pub use read::check::ObjectCheck;
pub use read::download::{DownloadOptions, DownloadRequest, PcmStream, SkippedObject};
pub use read::list::{ConversationListing, ForeignEntry, ListEntry};
pub use read::placement::{Gap, MergeReport, Overlap, TimeSpan};
pub use recorder::{
    BudgetScope, Durability, FlushCounts, FlushError, FlushReason, Recorder, RecorderConfig,
    RecorderError, RecorderStats, RecoveredConversation, RecoveryReport, RetryPolicy, StreamLimits,
    TEMP_SWEEP_AGE,
};
pub use service::ChunkService;
pub use write::upload::{Chunk, Sealing, UploadOptions, UploadReport};
