//! Sealing for native packs: a per-object key bound to the pack's place, and the STREAM nonce
//! construction.
//!
//! Each pack gets a random 16-byte salt and a random 7-byte nonce prefix ([`SealParams`], stored
//! in the pack header). The object key of a version-2 pack ([`KeyScheme::V2`], what this crate
//! writes) is HKDF-SHA256(ikm = the user's [`PackRootKey`], salt = object salt,
//! info = [`PackPlace::key_info`]: [`PACK_KEY_INFO_V2`], then the user id and the conversation
//! id, each length-prefixed). Version-1 packs ([`KeyScheme::V1`], read only) derived it from the
//! user's Omi key with info = [`PACK_KEY_INFO`] and no place.
//!
//! Frame `i` is sealed with AES-256-GCM under the nonce `prefix[7] || be_u32 i || last`
//! (`last` = 1 for the final segment, else 0; this is the STREAM construction, byte-identical
//! to RustCrypto's `aead-stream` `StreamBE32`) and with the caller's associated data; the pack
//! format passes the header bytes followed by the frame's index entry. A sealed frame is
//! `ciphertext || tag[16]`, exactly [`sealed_len`] bytes.
//!
//! [`PackSealer`] seals frames strictly in order and nothing after the last one;
//! [`PackOpener`] opens any frame alone (for ranged reads). Opening fails when a frame is moved
//! to another position (counter in the nonce), taken from another pack (other salt, so other
//! key), when the final segment is dropped (the new "last" frame was sealed with flag 0), when
//! the header or index entry changed (associated data), under another user or key id, or (v2)
//! when the pack is opened as another conversation's.
//!
//! ```
//! use chunk_crypto::{KeyId, PackRootKey, pack::{PackOpener, PackPlace, PackSealer}};
//!
//! let root = PackRootKey::from_bytes([1; 32]);
//! let place = PackPlace::new("alice", "conv-1");
//! let mut sealer = PackSealer::new(&root, place, KeyId::new(1))?;
//! let header = sealer.params().to_bytes(); // the pack stores these in its header
//! let a = sealer.seal(0, &header, b"chunk 0", false)?;
//! let b = sealer.seal(1, &header, b"index", true)?;
//!
//! let opener = PackOpener::new(&root, place, &sealer.params());
//! assert_eq!(opener.open(1, &header, &b, true)?, b"index");
//! assert_eq!(opener.open(0, &header, &a, false)?, b"chunk 0");
//! assert!(opener.open(0, &header, &b, true).is_err()); // frame moved to another position
//!
//! // The same pack opened as another conversation's does not open.
//! let elsewhere = PackOpener::new(&root, PackPlace::new("alice", "conv-2"), &sealer.params());
//! assert!(elsewhere.open(0, &header, &a, false).is_err());
//! # Ok::<(), chunk_crypto::CryptoError>(())
//! ```

use std::fmt;

use aes_gcm::aead::KeyInit;
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use zeroize::Zeroizing;

pub use chunk_format::pack::KeyScheme;

use crate::KeyId;
use crate::error::{CryptoError, Result};
use crate::keys::{KEY_LEN, PackRootKey, UserKey, hkdf_sha256_into};

/// Length of the per-object HKDF salt.
pub const SALT_LEN: usize = 16;

/// Length of the random nonce prefix (12-byte nonce minus 4 counter bytes and 1 flag byte).
pub const NONCE_PREFIX_LEN: usize = 7;

/// Length of [`SealParams::to_bytes`]: key id (4) + salt (16) + nonce prefix (7).
pub const SEAL_PARAMS_LEN: usize = 4 + SALT_LEN + NONCE_PREFIX_LEN;

/// Length of the AES-GCM tag after each sealed frame.
pub const TAG_LEN: usize = crate::TAG_LEN;

/// HKDF `info` of a version-1 pack's object key (read only); names the format version so that
/// a later construction derives unrelated keys.
pub const PACK_KEY_INFO: &[u8] = b"chunkvault pack v1";

/// First bytes of a version-2 pack's HKDF `info`, before the place ([`PackPlace::key_info`]).
pub const PACK_KEY_INFO_V2: &[u8] = b"chunkvault pack v2";

/// Where a pack lives: its user and its conversation. A version-2 pack's key is bound to both,
/// so an authentic pack copied to another user's or another conversation's prefix does not
/// open there.
///
/// The object's span (`START-END` in its name) is bound too, though not in the key (a pack is
/// sealed while it is written, before its end is known): the span is the sealed index's first
/// start and last end, and every reader checks the name against the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PackPlace<'a> {
    /// The user id, as in the object path.
    pub uid: &'a str,
    /// The conversation id, as in the object path.
    pub conversation: &'a str,
}

impl<'a> PackPlace<'a> {
    /// The place of a pack of user `uid` in conversation `conversation`.
    pub const fn new(uid: &'a str, conversation: &'a str) -> PackPlace<'a> {
        PackPlace { uid, conversation }
    }

    /// The HKDF `info` of a version-2 object key: [`PACK_KEY_INFO_V2`] ‖ `be_u64 len(uid)` ‖
    /// `uid` ‖ `be_u64 len(conversation)` ‖ `conversation` (UTF-8 bytes). The length prefixes
    /// make the encoding injective: no two places give the same bytes.
    pub fn key_info(&self) -> Vec<u8> {
        let mut info = Vec::with_capacity(
            PACK_KEY_INFO_V2.len() + 16 + self.uid.len() + self.conversation.len(),
        );
        info.extend_from_slice(PACK_KEY_INFO_V2);
        for part in [self.uid, self.conversation] {
            // usize is at most 64 bits on every target Rust supports, so this is lossless.
            let len = u64::try_from(part.len()).unwrap_or(u64::MAX);
            info.extend_from_slice(&len.to_be_bytes());
            info.extend_from_slice(part.as_bytes());
        }
        info
    }
}

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

/// The AES-256-GCM cipher under the per-object key derived from `ikm` with `info`. The derived
/// key lives only in a buffer wiped on drop (here, once the cipher is keyed); the cipher wipes
/// its key schedule on drop.
fn object_cipher(ikm: &[u8; KEY_LEN], salt: &[u8; SALT_LEN], info: &[u8]) -> Aes256Gcm {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    hkdf_sha256_into(ikm, salt, info, &mut key);
    Aes256Gcm::new((&*key).into())
}

/// The cipher of a version-2 pack at `place`.
fn cipher_v2(root: &PackRootKey, place: PackPlace<'_>, salt: &[u8; SALT_LEN]) -> Aes256Gcm {
    object_cipher(root.expose_bytes(), salt, &place.key_info())
}

/// The cipher of a version-1 pack.
fn cipher_v1(user: &UserKey, salt: &[u8; SALT_LEN]) -> Aes256Gcm {
    object_cipher(user.expose_bytes(), salt, PACK_KEY_INFO)
}

/// The header's record of `params` under `scheme`.
fn seal_info(params: SealParams, scheme: KeyScheme) -> chunk_format::pack::SealInfo {
    chunk_format::pack::SealInfo {
        scheme,
        key_id: params.key_id.get(),
        salt: params.salt,
        nonce_prefix: params.nonce_prefix,
    }
}

/// Seals one pack's frames, strictly in counter order, nothing after the last.
pub struct PackSealer {
    cipher: Aes256Gcm,
    params: SealParams,
    scheme: KeyScheme,
    /// The counter the next frame must have.
    next: u32,
    finished: bool,
}

impl PackSealer {
    /// Starts a version-2 pack of `place`, sealed under the user's pack root key `root`
    /// (derived from key `key_id`), with fresh random [`SealParams`].
    pub fn new(root: &PackRootKey, place: PackPlace<'_>, key_id: KeyId) -> Result<PackSealer> {
        let params = SealParams::random(key_id)?;
        Ok(PackSealer::from_cipher(
            cipher_v2(root, place, &params.salt),
            params,
            KeyScheme::V2,
        ))
    }

    /// Starts a version-2 pack with caller-chosen parameters. **Only for test vectors; never
    /// enable the `insecure-fixed-nonces` feature in production: it allows nonce reuse.** Two
    /// packs sealed under one key and place with the same parameters reuse nonces, which breaks
    /// confidentiality and authenticity.
    ///
    /// Public only with the non-default cargo feature `insecure-fixed-nonces` (and inside this
    /// crate's unit tests).
    #[cfg(any(test, feature = "insecure-fixed-nonces"))]
    pub fn with_params_for_tests(
        root: &PackRootKey,
        place: PackPlace<'_>,
        params: SealParams,
    ) -> PackSealer {
        PackSealer::from_cipher(cipher_v2(root, place, &params.salt), params, KeyScheme::V2)
    }

    /// Starts a version-1 pack (the key derived from the Omi user key, bound to no place) with
    /// caller-chosen parameters: only to make the old format in tests (this version reads
    /// version 1 and never writes it). The same warning as
    /// [`PackSealer::with_params_for_tests`] applies.
    #[cfg(any(test, feature = "insecure-fixed-nonces"))]
    pub fn v1_with_params_for_tests(user: &UserKey, params: SealParams) -> PackSealer {
        PackSealer::from_cipher(cipher_v1(user, &params.salt), params, KeyScheme::V1)
    }

    fn from_cipher(cipher: Aes256Gcm, params: SealParams, scheme: KeyScheme) -> PackSealer {
        PackSealer {
            cipher,
            params,
            scheme,
            next: 0,
            finished: false,
        }
    }

    /// How this pack's key is derived (the header version it is written as).
    pub fn scheme(&self) -> KeyScheme {
        self.scheme
    }

    /// What the pack header records: scheme, key id, salt and nonce prefix.
    pub fn seal_info(&self) -> chunk_format::pack::SealInfo {
        seal_info(self.params, self.scheme)
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
            .field("scheme", &self.scheme)
            .field("next", &self.next)
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

/// Opens the frames of one sealed pack, each on its own (for ranged reads).
pub struct PackOpener {
    cipher: Aes256Gcm,
    params: SealParams,
    scheme: KeyScheme,
}

impl PackOpener {
    /// Prepares to open a version-2 pack of `place` whose header recorded `params`, under the
    /// user's pack root key `root` (which must be derived from `params.key_id`;
    /// [`crate::Keyring::pack_opener`] picks it).
    pub fn new(root: &PackRootKey, place: PackPlace<'_>, params: &SealParams) -> PackOpener {
        PackOpener {
            cipher: cipher_v2(root, place, &params.salt),
            params: *params,
            scheme: KeyScheme::V2,
        }
    }

    /// Prepares to open a version-1 pack whose header recorded `params`, under the user's Omi
    /// key `user` (derived from `params.key_id`).
    pub fn v1(user: &UserKey, params: &SealParams) -> PackOpener {
        PackOpener {
            cipher: cipher_v1(user, &params.salt),
            params: *params,
            scheme: KeyScheme::V1,
        }
    }

    /// How the key of the pack this opener opens is derived.
    pub fn scheme(&self) -> KeyScheme {
        self.scheme
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
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MasterSecret;
    use crate::keys::hkdf_sha256;

    const PLACE: PackPlace<'static> = PackPlace::new("u", "c");

    fn root() -> PackRootKey {
        PackRootKey::from_bytes([3; 32])
    }

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
        let mut sealer = PackSealer::with_params_for_tests(&root(), PLACE, params());
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
        let mut sealer = PackSealer::with_params_for_tests(&root(), PLACE, params());
        sealer.next = u32::MAX;
        assert!(matches!(
            sealer.seal(u32::MAX, b"", b"x", false),
            Err(CryptoError::CounterExhausted)
        ));
        let sealed = sealer.seal(u32::MAX, b"", b"end", true).unwrap();
        let opener = PackOpener::new(&root(), PLACE, &params());
        assert_eq!(opener.open(u32::MAX, b"", &sealed, true).unwrap(), b"end");
    }

    #[test]
    fn known_answer_seals_version_1_byte_for_byte() {
        // The version-1 worked example of docs/FORMAT.md ("Pack sealing (STREAM)"), computed
        // independently with Python `cryptography`; tests/stream_compat.rs opens the same bytes.
        let user = UserKey::from_bytes([0x42; 32]);
        let params = worked_example_params();
        assert_eq!(
            hex::encode(*hkdf_sha256(
                user.expose_bytes(),
                &params.salt,
                PACK_KEY_INFO
            )),
            "cec52949e7122ec4d1f54b8df99a80f84492136e1a6eede26320193a0ed5e41e"
        );
        let sealer = PackSealer::v1_with_params_for_tests(&user, params);
        assert_seals_worked_example(
            sealer,
            KeyScheme::V1,
            "5e1a0daadd75d2451cb814e314c5a062c9794cfa109943",
            "71f2c54ca5a3a03351980980034912e14fc97155b2",
        );
    }

    /// The seal parameters of FORMAT.md's worked examples: key id 3, salt `0123456789abcdef`,
    /// nonce prefix `nonce-p`.
    fn worked_example_params() -> SealParams {
        SealParams {
            key_id: KeyId::new(3),
            salt: *b"0123456789abcdef",
            nonce_prefix: *b"nonce-p",
        }
    }

    /// Seals FORMAT.md's two worked-example segments ("chunk 0" with aad "hdr|e0", then the
    /// final "index" with aad "hdr") and compares them with the expected hex.
    fn assert_seals_worked_example(
        mut sealer: PackSealer,
        scheme: KeyScheme,
        frame0: &str,
        index: &str,
    ) {
        assert_eq!(sealer.seal_info().scheme, scheme);
        assert_eq!(
            hex::encode(sealer.seal(0, b"hdr|e0", b"chunk 0", false).unwrap()),
            frame0
        );
        assert_eq!(
            hex::encode(sealer.seal(1, b"hdr", b"index", true).unwrap()),
            index
        );
    }

    #[test]
    fn known_answer_seals_version_2_byte_for_byte() {
        // The version-2 worked example of docs/FORMAT.md, computed independently with Python
        // `cryptography` (the script is in that section).
        let secret = MasterSecret::new(format!("omi_{}", "0".repeat(60)).into_bytes()).unwrap();
        let root = PackRootKey::derive(&secret, "test-uid");
        assert_eq!(
            hex::encode(root.expose_bytes()),
            "d0221c9ed056d20ae80b2354d3b2eb4bb75355db749771c5a3fc777e99c49d75"
        );
        let place = PackPlace::new("test-uid", "conv-1");
        assert_eq!(
            hex::encode(place.key_info()),
            "6368756e6b7661756c74207061636b2076320000000000000008746573742d756964\
             0000000000000006636f6e762d31"
        );
        let params = worked_example_params();
        assert_eq!(
            hex::encode(*hkdf_sha256(
                root.expose_bytes(),
                &params.salt,
                &place.key_info()
            )),
            "f5379998eec530798de471a18d9a796698e27f2a37b56e246236b6b56f99c782"
        );
        assert_seals_worked_example(
            PackSealer::with_params_for_tests(&root, place, params),
            KeyScheme::V2,
            "76f41f3bb46624d49dfc477eca166d8f0f9d1579088829",
            "cd32b8d2253bd47f115c19f8d66c4c42ea8f7206eb",
        );
    }

    #[test]
    fn version_2_keys_bind_user_and_conversation() {
        let root = root();
        let mut sealer = PackSealer::with_params_for_tests(&root, PLACE, params());
        let frame = sealer.seal(0, b"aad", b"audio", true).unwrap();
        let opens = |root: &PackRootKey, place| {
            PackOpener::new(root, place, &params())
                .open(0, b"aad", &frame, true)
                .is_ok()
        };
        assert!(opens(&root, PLACE));
        assert!(
            !opens(&root, PackPlace::new("u", "c2")),
            "other conversation"
        );
        assert!(
            !opens(&root, PackPlace::new("u2", "c")),
            "other user, same root"
        );
        // Length prefixes: moving bytes between the two ids changes the key.
        assert!(!opens(&root, PackPlace::new("uc", "")));
        assert!(
            !opens(&PackRootKey::from_bytes([4; 32]), PLACE),
            "other root"
        );
        // The version-1 key of the same bytes is another key.
        assert!(
            PackOpener::v1(&UserKey::from_bytes([3; 32]), &params())
                .open(0, b"aad", &frame, true)
                .is_err()
        );
    }

    #[test]
    fn pack_root_is_not_the_omi_user_key() {
        let secret = MasterSecret::new(vec![7; 32]).unwrap();
        assert_ne!(
            PackRootKey::derive(&secret, "u").expose_bytes(),
            UserKey::derive(&secret, "u").expose_bytes()
        );
        assert_eq!(
            format!("{:?}", PackRootKey::derive(&secret, "u")),
            "PackRootKey(redacted)"
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
        let opener = PackOpener::new(&root(), PLACE, &params());
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
