//! Object I/O for chunkvault over Apache OpenDAL: the bucket layout, single and streaming
//! writes, batch-aware listing, ranged reads, batch deletes and verified prefix purges, with
//! retry, timeout, concurrency and operation-counting layers.
//!
//! ```
//! use bytes::Bytes;
//! use chunk_format::ObjectName;
//! use chunk_store::layout::{self, ConversationId, UserId};
//! use chunk_store::{PutMode, Store};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! # rt.block_on(async {
//! let store = Store::from_uri("memory://")?; // or fs:///var/lib/chunkvault, s3://bucket?…
//! let uid = UserId::new("oracle-uid")?;
//! let conv = ConversationId::new("conv-e")?;
//!
//! // One object from one buffer; create-only refuses to replace it.
//! let name: ObjectName = "1786961845.727.bin".parse()?;
//! let path = layout::chunk_path(&uid, &conv, &name);
//! store.put(&path, Bytes::from_static(&[0; 320]), PutMode::CreateOnly).await?;
//! assert!(store.put(&path, Bytes::new(), PutMode::CreateOnly).await.is_err());
//!
//! // A batch streamed piece by piece into one object, committed at close.
//! let batch: ObjectName = "1786961850.727-1786961855.727.batch.bin".parse()?;
//! let mut writer = store.writer(&layout::chunk_path(&uid, &conv, &batch), PutMode::CreateOnly).await?;
//! writer.write(Bytes::from_static(&[1; 320])).await?;
//! writer.write(Bytes::from_static(&[2; 320])).await?;
//! assert_eq!(writer.close().await?, 640);
//!
//! // Listing parses every name; anything else is reported as foreign.
//! store.put(&format!("{}notes.txt", layout::chunks_prefix(&uid, &conv)), Bytes::new(), PutMode::Overwrite).await?;
//! let listing = store.list_conversation(&uid, &conv).await?;
//! assert_eq!(listing.objects.len(), 2);
//! assert!(listing.objects[1].is_batch());
//! assert_eq!(listing.foreign.len(), 1);
//!
//! // Ranged reads, and the operation counts the cost report uses.
//! assert_eq!(store.read_range(&path, 0..4).await?, Bytes::from_static(&[0; 4]));
//! // Four writes reached the backend (the refused create-only one included).
//! assert_eq!(store.op_counts().write, 4);
//!
//! // Purges verify: delete, list again, fail if anything is left.
//! let report = store.purge_prefix(&format!("chunks/{uid}/")).await?;
//! assert_eq!(report.deleted, 3);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # })
//! # }
//! ```
//!
//! One file per operation, as in OpenDAL: [`put`](Store::put), [`writer`](Store::writer)
//! ([`ObjectWriter`]), [`list_conversation`](Store::list_conversation) /
//! [`list_prefix`](Store::list_prefix), [`read`](Store::read) /
//! [`read_range`](Store::read_range) / [`stat`](Store::stat),
//! [`delete_many`](Store::delete_many) / [`purge_prefix`](Store::purge_prefix).
//! Backends come from URIs ([`uri`]); ids and prefixes from [`layout`]; the OpenDAL layers
//! from [`layers`].

pub mod confine;
pub mod durable;
pub mod error;
pub mod layers;
pub mod layout;
pub mod uri;

mod delete;
mod list;
mod metadata;
mod path;
mod put;
mod read;
mod store;
mod write;

pub use delete::PurgeReport;
pub use durable::TempSweep;
pub use error::{Result, StoreError, StoreOp};
pub use layers::{FaultLayer, OpCounter, OpCounts};
pub use layout::{ChunkPath, ChunkPathError, ConversationId, IdError, UserId};
pub use list::{ForeignObject, ListedObject, Listing, PrefixListing};
pub use metadata::{ObjectMeta, UserMetadata};
pub use path::{FS_TMP_DIR, MAX_PATH_LEN};
pub use put::PutMode;
pub use store::{CreateOnlyMode, RetryOptions, Store, StoreBuilder, StoreOptions};
pub use write::ObjectWriter;

/// The OpenDAL version this crate is built against (re-exported so callers can build an
/// [`opendal::Operator`] for [`Store::from_operator`] without a separate dependency).
pub use opendal;
