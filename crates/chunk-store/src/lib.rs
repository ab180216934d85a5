//! Object I/O for chunkvault over Apache OpenDAL.
//!
//! This crate will hold backends by URI (fs, memory, s3, gcs, azblob), the bucket layout,
//! streaming writers, paged batch-aware listing, ranged reads, batch deletes and verified
//! prefix purges, plus retry / timeout / operation-counting layers.
//! It is empty until the store issue lands.
