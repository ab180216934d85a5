//! Shared helpers for chunkvault's workspace-level integration tests.
//!
//! - [`omi`] loads the Omi compatibility vectors committed under `tests/fixtures/omi/`
//!   (scenarios A–E: bucket objects written by Omi's own storage code, plus the expected
//!   listing, download, delete and object-analysis results) and regenerates their input PCM.
//! - [`speech`] loads the synthetic speech recording under `tests/fixtures/speech/` that
//!   compression measurements use.
//!
//! Everything is read from this crate's directory (`CARGO_MANIFEST_DIR`), so the tests work in
//! a fresh clone without any data outside the repository.

pub mod backends;
pub mod omi;
pub mod speech;

use sha2::{Digest, Sha256};
use std::path::PathBuf;

/// Computes the SHA-256 of `data` as lowercase hex, the form every fixture JSON uses.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Cases for an expensive property test (one that runs many downloads per case): the
/// `PROPTEST_CASES` of the run, at most `cap` so that the CI step (2,000 cases per property)
/// stays within its time, or `default` when the variable is unset. `cargo xtask proptest` sets
/// `CHUNKVAULT_PROPTEST_UNCAPPED=1`, so a long run gets every case it asks for.
pub fn expensive_proptest_cases(default: u32, cap: u32) -> u32 {
    let uncapped = std::env::var("CHUNKVAULT_PROPTEST_UNCAPPED").is_ok_and(|v| v == "1");
    match std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
    {
        Some(cases) if uncapped => cases,
        Some(cases) => cases.min(cap),
        None => default,
    }
}

/// Counts the batches the recorder's spool in the directory `spool` holds (opened and not
/// retired).
pub fn spool_segments(spool: &std::path::Path) -> usize {
    chunk_service::spool::inspect(spool)
        .expect("spool reads")
        .batches
}

/// Returns the absolute path of `tests/fixtures/` in this checkout.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_hex_matches_known_digests() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
