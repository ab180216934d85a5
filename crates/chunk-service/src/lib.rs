//! chunkvault behaviour over a store.
//!
//! This crate will hold protection levels, single and batch upload, listing, delete,
//! download-and-merge, conversation delete and user purge, the recording batcher, the durable
//! spool and compaction. It is empty until the service issue lands.
