//! Sealing for native packs: a per-object key and the STREAM nonce construction.
//!
//! Each pack gets a random 16-byte salt and a random 7-byte nonce prefix ([`SealParams`], stored
//! in the pack header). The object key is HKDF-SHA256(ikm = user key, salt = object salt,
//! info = [`PACK_KEY_INFO`]). Frame `i` is sealed with AES-256-GCM under the nonce
//! `prefix[7] || be_u32 i || last` (`last` = 1 for the final segment, else 0; this is the
//! STREAM construction, byte-identical to RustCrypto's `aead-stream` `StreamBE32`) and with the
//! caller's associated data; the pack format passes the header bytes followed by the frame's
//! index entry. A sealed frame is `ciphertext || tag[16]`, exactly [`sealed_len`] bytes.
//!
//! [`PackSealer`] seals frames strictly in order and nothing after the last one;
//! [`PackOpener`] opens any frame alone (for ranged reads). Opening fails when a frame is moved
//! to another position (counter in the nonce), taken from another pack (other salt, so other
//! key), when the final segment is dropped (the new "last" frame was sealed with flag 0), when
//! the header or index entry changed (associated data), or under another user or key id.
//!
//! ```
//! use chunk_crypto::{KeyId, UserKey, pack::{PackOpener, PackSealer, SealParams}};
//!
//! let user = UserKey::from_bytes([1; 32]);
//! let mut sealer = PackSealer::new(&user, KeyId::new(1))?;
//! let header = sealer.params().to_bytes(); // the pack stores these in its header
//! let a = sealer.seal(0, &header, b"chunk 0", false)?;
//! let b = sealer.seal(1, &header, b"index", true)?;
//!
//! let params = SealParams::from_bytes(&header);
//! let opener = PackOpener::new(&user, &params);
//! assert_eq!(opener.open(1, &header, &b, true)?, b"index");
//! assert_eq!(opener.open(0, &header, &a, false)?, b"chunk 0");
//! assert!(opener.open(0, &header, &b, true).is_err()); // frame moved to another position
//! # Ok::<(), chunk_crypto::CryptoError>(())
//! ```

use std::fmt;

use aes_gcm::aead::KeyInit;
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use zeroize::Zeroizing;

use crate::KeyId;
use crate::error::{CryptoError, Result};
use crate::keys::{KEY_LEN, UserKey, hkdf_sha256_into};

/// Length of the per-object HKDF salt.
pub const SALT_LEN: usize = 16;

/// Length of the random nonce prefix (12-byte nonce minus 4 counter bytes and 1 flag byte).
pub const NONCE_PREFIX_LEN: usize = 7;

/// Length of [`SealParams::to_bytes`]: key id (4) + salt (16) + nonce prefix (7).
pub const SEAL_PARAMS_LEN: usize = 4 + SALT_LEN + NONCE_PREFIX_LEN;

/// Length of the AES-GCM tag after each sealed frame.
pub const TAG_LEN: usize = crate::TAG_LEN;

/// HKDF `info` of the per-object key; names the format version so that a later construction
/// derives unrelated keys.
pub const PACK_KEY_INFO: &[u8] = b"chunkvault pack v1";

/// Stored length of a frame whose plaintext is `plain_len` bytes: `plain_len + 16`.
///
/// The pack encoder needs it before sealing, because the frame's index entry (which records
/// the stored length) is part of the associated data.
pub const fn sealed_len(plain_len: usize) -> usize {
    plain_len.saturating_add(TAG_LEN)
}

/// The per-pack sealing parameters the pack header records: key id, salt and nonce prefix.
///
/// None of them is secret; they make every pack's key and nonces unique.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SealParams {
    /// Which master secret of the key ring sealed the pack.
    pub key_id: KeyId,
    /// Salt of the per-object key derivation.
    pub salt: [u8; SALT_LEN],
    /// First 7 bytes of every frame nonce.
    pub nonce_prefix: [u8; NONCE_PREFIX_LEN],
}

impl SealParams {
    /// Fresh parameters for key `key_id`: salt and nonce prefix from the OS RNG.
    pub fn random(key_id: KeyId) -> Result<SealParams> {
        let mut salt = [0u8; SALT_LEN];
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        getrandom::fill(&mut salt).map_err(CryptoError::Rng)?;
        getrandom::fill(&mut nonce_prefix).map_err(CryptoError::Rng)?;
        Ok(SealParams {
            key_id,
            salt,
            nonce_prefix,
        })
    }

    /// The fixed 27-byte encoding: `be_u32 key_id || salt[16] || nonce_prefix[7]`.
    pub fn to_bytes(&self) -> [u8; SEAL_PARAMS_LEN] {
        let mut out = [0u8; SEAL_PARAMS_LEN];
        let (id, rest) = out.split_at_mut(4);
        let (salt, prefix) = rest.split_at_mut(SALT_LEN);
        id.copy_from_slice(&self.key_id.get().to_be_bytes());
        salt.copy_from_slice(&self.salt);
        prefix.copy_from_slice(&self.nonce_prefix);
        out
    }

    /// Decodes [`SealParams::to_bytes`]; every 27-byte value is valid.
    pub fn from_bytes(bytes: &[u8; SEAL_PARAMS_LEN]) -> SealParams {
        let mut key_id = [0u8; 4];
        let mut salt = [0u8; SALT_LEN];
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        key_id.copy_from_slice(&bytes[..4]);
        salt.copy_from_slice(&bytes[4..4 + SALT_LEN]);
        nonce_prefix.copy_from_slice(&bytes[4 + SALT_LEN..]);
        SealParams {
            key_id: KeyId::new(u32::from_be_bytes(key_id)),
            salt,
            nonce_prefix,
        }
    }
}

/// The 12-byte STREAM nonce of frame `counter`: `prefix[7] || be_u32 counter || last`.
pub fn stream_nonce(prefix: &[u8; NONCE_PREFIX_LEN], counter: u32, last: bool) -> [u8; 12] {
    let mut nonce = [0u8; 12];
    let (head, tail) = nonce.split_at_mut(NONCE_PREFIX_LEN);
    head.copy_from_slice(prefix);
    let (count, flag) = tail.split_at_mut(4);
    count.copy_from_slice(&counter.to_be_bytes());
    flag.fill(u8::from(last));
    nonce
}

/// The AES-256-GCM cipher under the per-object key. The derived key lives only in a buffer
/// wiped on drop (here, once the cipher is keyed); the cipher wipes its key schedule on drop.
fn object_cipher(user: &UserKey, salt: &[u8; SALT_LEN]) -> Aes256Gcm {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    hkdf_sha256_into(user.expose_bytes(), salt, PACK_KEY_INFO, &mut key);
    Aes256Gcm::new((&*key).into())
}

/// Seals one pack's frames, strictly in counter order, nothing after the last.
pub struct PackSealer {
    cipher: Aes256Gcm,
    params: SealParams,
    /// The counter the next frame must have.
    next: u32,
    finished: bool,
}

impl PackSealer {
    /// Starts a pack sealed under `user` (derived from key `key_id`), with fresh random
    /// [`SealParams`].
    pub fn new(user: &UserKey, key_id: KeyId) -> Result<PackSealer> {
        Ok(PackSealer::with_params(user, SealParams::random(key_id)?))
    }

    /// Starts a pack with caller-chosen parameters. **Only for test vectors; never enable the
    /// `insecure-fixed-nonces` feature in production: it allows nonce reuse.** Two packs sealed
    /// under one user key with the same parameters reuse nonces, which breaks confidentiality
    /// and authenticity.
    ///
    /// Public only with the non-default cargo feature `insecure-fixed-nonces` (and inside this
    /// crate's unit tests).
    #[cfg(any(test, feature = "insecure-fixed-nonces"))]
    pub fn with_params_for_tests(user: &UserKey, params: SealParams) -> PackSealer {
        PackSealer::with_params(user, params)
    }

    fn with_params(user: &UserKey, params: SealParams) -> PackSealer {
        PackSealer {
            cipher: object_cipher(user, &params.salt),
            params,
            next: 0,
            finished: false,
        }
    }

    /// The parameters to record in the pack header.
    pub fn params(&self) -> SealParams {
        self.params
    }

    /// Whether the last frame has been sealed.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// The counter the next frame must carry (`None` once the last frame is sealed).
    pub fn next_counter(&self) -> Option<u32> {
        if self.finished { None } else { Some(self.next) }
    }

    /// Seals frame `counter` with associated data `aad` and returns `ciphertext || tag`
    /// ([`sealed_len`] bytes). `last` marks the pack's final segment.
    ///
    /// Refuses a counter other than the expected next one ([`CryptoError::OutOfOrder`]),
    /// anything after the last segment ([`CryptoError::AfterLast`]) and a non-final frame at
    /// counter `u32::MAX` ([`CryptoError::CounterExhausted`]); a refused call changes nothing.
    pub fn seal(
        &mut self,
        counter: u32,
        aad: &[u8],
        plaintext: &[u8],
        last: bool,
    ) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(sealed_len(plaintext.len()));
        self.seal_into(counter, aad, plaintext, last, &mut out)?;
        Ok(out)
    }

    /// Like [`PackSealer::seal`], appending `ciphertext || tag` to `out` (encrypting in place
    /// there). On error `out` is left as it was.
    pub fn seal_into(
        &mut self,
        counter: u32,
        aad: &[u8],
        plaintext: &[u8],
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        if self.finished {
            return Err(CryptoError::AfterLast { got: counter });
        }
        if counter != self.next {
            return Err(CryptoError::OutOfOrder {
                expected: self.next,
                got: counter,
            });
        }
        // As in `aead-stream`: the largest counter is kept for a final segment, so a stream
        // can always be finished.
        if counter == u32::MAX && !last {
            return Err(CryptoError::CounterExhausted);
        }
        let nonce = Nonce::from(stream_nonce(&self.params.nonce_prefix, counter, last));
        crate::seal_append(&self.cipher, &nonce, aad, plaintext, out).map_err(|()| {
            CryptoError::PlaintextTooLong {
                len: plaintext.len(),
            }
        })?;
        if last {
            self.finished = true;
        } else {
            self.next = counter + 1;
        }
        Ok(())
    }
}

impl fmt::Debug for PackSealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PackSealer")
            .field("params", &self.params)
            .field("next", &self.next)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// Opens the frames of one sealed pack, each on its own (for ranged reads).
pub struct PackOpener {
    cipher: Aes256Gcm,
    params: SealParams,
}

impl PackOpener {
    /// Prepares to open a pack whose header recorded `params`, under `user` (which must be the
    /// user key derived from `params.key_id`; [`crate::Keyring::pack_opener`] picks it).
    pub fn new(user: &UserKey, params: &SealParams) -> PackOpener {
        PackOpener {
            cipher: object_cipher(user, &params.salt),
            params: *params,
        }
    }

    /// The parameters this opener was made with.
    pub fn params(&self) -> SealParams {
        self.params
    }

    /// Opens frame `counter` (`ciphertext || tag`) with associated data `aad`; `last` must be
    /// true exactly for the pack's final segment. Any mismatch is [`CryptoError::Decrypt`].
    pub fn open(&self, counter: u32, aad: &[u8], sealed: &[u8], last: bool) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(sealed.len().saturating_sub(TAG_LEN));
        self.open_into(counter, aad, sealed, last, &mut out)?;
        Ok(out)
    }

    /// Like [`PackOpener::open`], appending the plaintext to `out` (decrypting in place there).
    /// On error `out` is left as it was.
    pub fn open_into(
        &self,
        counter: u32,
        aad: &[u8],
        sealed: &[u8],
        last: bool,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let index = counter as usize;
        let (ciphertext, tag) =
            sealed
                .split_last_chunk::<TAG_LEN>()
                .ok_or(CryptoError::FrameTooShort {
                    index,
                    len: sealed.len(),
                    min: TAG_LEN,
                })?;
        let nonce = Nonce::from(stream_nonce(&self.params.nonce_prefix, counter, last));
        crate::open_in_place(&self.cipher, &nonce, aad, ciphertext, &Tag::from(*tag), out)
            .map_err(|()| CryptoError::Decrypt { index })
    }
}

impl fmt::Debug for PackOpener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PackOpener")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::hkdf_sha256;

    fn params() -> SealParams {
        SealParams {
            key_id: KeyId::new(0x0102_0304),
            salt: std::array::from_fn(|i| 0x10 + i as u8),
            nonce_prefix: std::array::from_fn(|i| 0xa0 + i as u8),
        }
    }

    #[test]
    fn params_encoding_is_fixed() {
        let bytes = params().to_bytes();
        assert_eq!(
            hex::encode(bytes),
            "01020304101112131415161718191a1b1c1d1e1fa0a1a2a3a4a5a6"
        );
        assert_eq!(SealParams::from_bytes(&bytes), params());
    }

    #[test]
    fn nonce_layout() {
        let prefix = params().nonce_prefix;
        assert_eq!(
            hex::encode(stream_nonce(&prefix, 0x0a0b_0c0d, true)),
            "a0a1a2a3a4a5a60a0b0c0d01"
        );
        assert_eq!(
            hex::encode(stream_nonce(&prefix, 0, false)),
            "a0a1a2a3a4a5a60000000000"
        );
    }

    #[test]
    fn sealer_enforces_order_and_last() {
        let user = UserKey::from_bytes([3; 32]);
        let mut sealer = PackSealer::with_params_for_tests(&user, params());
        assert_eq!(sealer.next_counter(), Some(0));
        assert!(matches!(
            sealer.seal(1, b"", b"x", false),
            Err(CryptoError::OutOfOrder {
                expected: 0,
                got: 1
            })
        ));
        let sealed = sealer.seal(0, b"", b"abc", false).unwrap();
        assert_eq!(sealed.len(), sealed_len(3));
        assert!(matches!(
            sealer.seal(0, b"", b"x", false),
            Err(CryptoError::OutOfOrder {
                expected: 1,
                got: 0
            })
        ));
        sealer.seal(1, b"", b"end", true).unwrap();
        assert!(sealer.is_finished());
        assert_eq!(sealer.next_counter(), None);
        assert!(matches!(
            sealer.seal(2, b"", b"x", false),
            Err(CryptoError::AfterLast { got: 2 })
        ));
    }

    #[test]
    fn largest_counter_is_kept_for_the_final_segment() {
        let user = UserKey::from_bytes([3; 32]);
        let mut sealer = PackSealer::with_params_for_tests(&user, params());
        sealer.next = u32::MAX;
        assert!(matches!(
            sealer.seal(u32::MAX, b"", b"x", false),
            Err(CryptoError::CounterExhausted)
        ));
        let sealed = sealer.seal(u32::MAX, b"", b"end", true).unwrap();
        let opener = PackOpener::new(&user, &params());
        assert_eq!(opener.open(u32::MAX, b"", &sealed, true).unwrap(), b"end");
    }

    #[test]
    fn known_answer_seals_byte_for_byte() {
        // The worked example of docs/FORMAT.md ("Pack sealing (STREAM)"), computed independently
        // with Python `cryptography`; tests/stream_compat.rs opens the same bytes.
        let user = UserKey::from_bytes([0x42; 32]);
        let params = SealParams {
            key_id: KeyId::new(3),
            salt: *b"0123456789abcdef",
            nonce_prefix: *b"nonce-p",
        };
        assert_eq!(
            hex::encode(*hkdf_sha256(
                user.expose_bytes(),
                &params.salt,
                PACK_KEY_INFO
            )),
            "cec52949e7122ec4d1f54b8df99a80f84492136e1a6eede26320193a0ed5e41e"
        );
        let mut sealer = PackSealer::with_params_for_tests(&user, params);
        assert_eq!(
            hex::encode(sealer.seal(0, b"hdr|e0", b"chunk 0", false).unwrap()),
            "5e1a0daadd75d2451cb814e314c5a062c9794cfa109943"
        );
        assert_eq!(
            hex::encode(sealer.seal(1, b"hdr", b"index", true).unwrap()),
            "71f2c54ca5a3a03351980980034912e14fc97155b2"
        );
    }

    #[test]
    fn per_object_key_depends_on_salt_and_info() {
        let user = [5u8; 32];
        let a = hkdf_sha256(&user, &[0; SALT_LEN], PACK_KEY_INFO);
        let b = hkdf_sha256(&user, &[1; SALT_LEN], PACK_KEY_INFO);
        let c = hkdf_sha256(&user, &[0; SALT_LEN], b"chunkvault pack v2");
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn short_sealed_frame_is_typed() {
        let opener = PackOpener::new(&UserKey::from_bytes([3; 32]), &params());
        assert!(matches!(
            opener.open(4, b"", &[0; 15], false),
            Err(CryptoError::FrameTooShort {
                index: 4,
                len: 15,
                min: 16
            })
        ));
    }
}
