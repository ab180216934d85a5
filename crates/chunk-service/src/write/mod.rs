//! The write path: uploads of single chunks and batches in every layout ([`upload`]) and the
//! pack writer ([`pack`]) that uploads, rewrites and compaction write packs with.

pub(crate) mod pack;
pub(crate) mod upload;
