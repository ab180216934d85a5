//! Keys and sealing for chunkvault.
//!
//! This crate will hold the master secret, the Omi-exact per-user key derivation
//! (HKDF-SHA256, salt = uid, info = `user-data-encryption`), Omi frame seal/open,
//! STREAM sealing for native packs, and the key ring used for rotation.
//! It is empty until the crypto issue lands.
