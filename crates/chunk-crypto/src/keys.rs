//! The master secret and the Omi-exact per-user key derived from it.

use std::fmt;

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{CryptoError, Result};

/// Shortest master secret accepted, in bytes (Omi refuses to start below this).
pub const MIN_SECRET_LEN: usize = 32;

/// Length of a per-user key: an AES-256 key.
pub const KEY_LEN: usize = 32;

/// HKDF `info` of Omi's per-user key derivation (compat doc §2.1).
pub const OMI_USER_KEY_INFO: &[u8] = b"user-data-encryption";

/// HKDF `info` of the per-user pack root key (version 2 packs).
pub const PACK_ROOT_INFO: &[u8] = b"chunkvault pack root v2";

/// The deployment's master secret: raw bytes, used exactly as Omi uses `ENCRYPTION_SECRET`.
///
/// Omi takes the environment variable's UTF-8 bytes as they are (no hex or base64 decoding); so
/// does this type. The bytes are wiped when the value is dropped and its `Debug` output shows
/// only the length.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct MasterSecret {
    bytes: Vec<u8>,
}

impl MasterSecret {
    /// Wraps `bytes` as a master secret; fails with [`CryptoError::ShortSecret`] below
    /// [`MIN_SECRET_LEN`] bytes (the rejected bytes are wiped too).
    pub fn new(bytes: Vec<u8>) -> Result<MasterSecret> {
        let secret = MasterSecret { bytes };
        if secret.bytes.len() < MIN_SECRET_LEN {
            return Err(CryptoError::ShortSecret {
                len: secret.bytes.len(),
            });
        }
        Ok(secret)
    }

    /// Reads the master secret from the environment variable `var` (Omi: `ENCRYPTION_SECRET`),
    /// taking its UTF-8 bytes as they are.
    pub fn from_env(var: &str) -> Result<MasterSecret> {
        match std::env::var(var) {
            Ok(text) => MasterSecret::new(text.into_bytes()),
            Err(std::env::VarError::NotPresent) => Err(CryptoError::MissingEnv {
                var: var.to_owned(),
            }),
            Err(std::env::VarError::NotUnicode(raw)) => {
                raw.into_encoded_bytes().zeroize();
                Err(CryptoError::EnvNotUnicode {
                    var: var.to_owned(),
                })
            }
        }
    }

    /// Number of bytes in the secret.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always `false`: a master secret has at least [`MIN_SECRET_LEN`] bytes.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub(crate) fn expose(&self) -> &[u8] {
        &self.bytes
    }
}

impl fmt::Debug for MasterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterSecret({} bytes, redacted)", self.bytes.len())
    }
}

/// A 32-byte AES-256-GCM key for one user, derived from a [`MasterSecret`] exactly as Omi does.
///
/// Wiped on drop; its `Debug` output never shows the bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct UserKey {
    bytes: [u8; KEY_LEN],
}

impl UserKey {
    /// Derives the key of user `uid`: HKDF-SHA256 with ikm = the secret's bytes, salt = `uid` as
    /// UTF-8, info = [`OMI_USER_KEY_INFO`], 32 bytes of output (compat doc §2.1).
    ///
    /// ```
    /// use chunk_crypto::{MasterSecret, UserKey};
    ///
    /// let secret = MasterSecret::new(format!("omi_{}", "0".repeat(60)).into_bytes())?;
    /// let key = UserKey::derive(&secret, "test-uid");
    /// assert_eq!(
    ///     hex::encode(key.expose_bytes()),
    ///     "9510276407860d215713e7cad3e7392ef969a5b8b8ed264844432fa72386c39b",
    /// );
    /// # Ok::<(), chunk_crypto::CryptoError>(())
    /// ```
    pub fn derive(secret: &MasterSecret, uid: &str) -> UserKey {
        // Derived straight into the key's own (wiped-on-drop) bytes: no unwiped copy is returned.
        let mut key = UserKey {
            bytes: [0; KEY_LEN],
        };
        hkdf_sha256_into(
            secret.expose(),
            uid.as_bytes(),
            OMI_USER_KEY_INFO,
            &mut key.bytes,
        );
        key
    }

    /// Wraps raw key bytes (test vectors, or a key kept elsewhere).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> UserKey {
        UserKey { bytes }
    }

    /// The raw key bytes, for comparison with test vectors. Do not log or store them.
    pub fn expose_bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

impl fmt::Debug for UserKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserKey(redacted)")
    }
}

/// The key every version-2 pack of one user is sealed from: HKDF-SHA256 with ikm = the master
/// secret, salt = `uid` as UTF-8, info = [`PACK_ROOT_INFO`].
///
/// It is independent of the user's Omi key ([`UserKey`], the same derivation with Omi's
/// `info`), so no key is used both as an AES-GCM key and as HKDF input. Each pack's own key is
/// derived from it with the pack's salt and place ([`crate::pack::PackPlace`]).
///
/// Wiped on drop; its `Debug` output never shows the bytes.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct PackRootKey {
    bytes: [u8; KEY_LEN],
}

impl PackRootKey {
    /// Derives the pack root key of user `uid` from `secret`.
    pub fn derive(secret: &MasterSecret, uid: &str) -> PackRootKey {
        let mut key = PackRootKey {
            bytes: [0; KEY_LEN],
        };
        hkdf_sha256_into(
            secret.expose(),
            uid.as_bytes(),
            PACK_ROOT_INFO,
            &mut key.bytes,
        );
        key
    }

    /// Wraps raw key bytes (test vectors, or a key kept elsewhere).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> PackRootKey {
        PackRootKey { bytes }
    }

    /// The raw key bytes, for comparison with test vectors. Do not log or store them.
    pub fn expose_bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }
}

impl fmt::Debug for PackRootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PackRootKey(redacted)")
    }
}

/// HKDF-SHA256 (RFC 5869) with a 32-byte output, returned in a buffer wiped on drop (tests;
/// the crate derives into its own buffers with [`hkdf_sha256_into`]).
#[cfg(test)]
pub(crate) fn hkdf_sha256(
    ikm: &[u8],
    salt: &[u8],
    info: &[u8],
) -> zeroize::Zeroizing<[u8; KEY_LEN]> {
    let mut okm = zeroize::Zeroizing::new([0u8; KEY_LEN]);
    hkdf_sha256_into(ikm, salt, info, &mut okm);
    okm
}

/// HKDF-SHA256 (RFC 5869) writing its 32-byte output into `okm` (which the caller wipes).
///
/// What is wiped: the PRK that HKDF-Extract returns (zeroed here, right away); the state of the
/// extract HMAC (which absorbed the IKM) and of the expand HMAC keyed with the PRK, held inside
/// the `Hkdf` value: their SHA-256 states and block buffers are wiped when dropped (`sha2`'s
/// `zeroize` feature, which turns on `digest/zeroize`: see Cargo.toml and the test
/// `hkdf_state_types_wipe_on_drop`).
/// What is not: transient stack values inside `hmac` and `hkdf` that those crates do not wipe —
/// the padded key block while the expand HMAC is keyed with the PRK, the inner hash while an
/// HMAC finishes, and `hkdf`'s copy of the output block `T(1)` (here equal to `okm`) — and any
/// copy the compiler leaves behind when it moves a value.
pub(crate) fn hkdf_sha256_into(ikm: &[u8], salt: &[u8], info: &[u8], okm: &mut [u8; KEY_LEN]) {
    // Not `Hkdf::new`: it drops the PRK that `extract` returns without wiping it.
    let (mut prk, hk) = Hkdf::<Sha256>::extract(Some(salt), ikm);
    prk.as_mut_slice().zeroize();
    // HKDF-SHA256 can expand up to 255 * 32 bytes; 32 is always accepted, so this cannot fail.
    #[allow(clippy::expect_used)]
    hk.expand(info, okm)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    fn omi_secret() -> MasterSecret {
        MasterSecret::new(format!("omi_{}", "0".repeat(60)).into_bytes()).unwrap()
    }

    #[test]
    fn compat_vector_keys() {
        let secret = omi_secret();
        assert_eq!(secret.len(), 64);
        assert_eq!(
            hex::encode(UserKey::derive(&secret, "test-uid").expose_bytes()),
            "9510276407860d215713e7cad3e7392ef969a5b8b8ed264844432fa72386c39b"
        );
        assert_eq!(
            hex::encode(UserKey::derive(&secret, "oracle-uid").expose_bytes()),
            "44e64c126df1a3938a47725ab14a255716d973369ecaa4e13a9237badb8b1295"
        );
    }

    #[test]
    fn rfc5869_test_case_1_prefix() {
        // RFC 5869 A.1: the first 32 bytes of the 42-byte OKM (HKDF output is a prefix-stable
        // stream, so a 32-byte request yields exactly those bytes).
        let ikm = [0x0b; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        assert_eq!(
            hex::encode(*hkdf_sha256(&ikm, &salt, &info)),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
        );
    }

    #[test]
    fn hkdf_state_types_wipe_on_drop() {
        // Compile-time guard that the `zeroize` features stay on: the SHA-256 cores the HMAC
        // inside `Hkdf<Sha256>` is built from, the SHA-256 hasher and its block buffer, and the
        // AES-GCM ciphers all wipe their state when dropped.
        fn wipes_on_drop<T: ZeroizeOnDrop>() {}
        use hkdf::hmac::EagerHash;
        wipes_on_drop::<<Sha256 as EagerHash>::Core>();
        wipes_on_drop::<Sha256>();
        wipes_on_drop::<aes_gcm::Aes256Gcm>();
        wipes_on_drop::<UserKey>();
        wipes_on_drop::<MasterSecret>();
        wipes_on_drop::<Zeroizing<[u8; KEY_LEN]>>();
    }

    #[test]
    fn derive_equals_hkdf_with_the_omi_info() {
        let secret = omi_secret();
        let key = UserKey::derive(&secret, "test-uid");
        let okm = hkdf_sha256(secret.expose(), b"test-uid", OMI_USER_KEY_INFO);
        assert_eq!(key.expose_bytes(), &*okm);
    }

    #[test]
    fn short_secret_is_refused_with_its_length() {
        let err = MasterSecret::new(vec![b'x'; 31]).unwrap_err();
        assert!(matches!(err, CryptoError::ShortSecret { len: 31 }));
        assert!(err.to_string().contains("31 bytes"), "{err}");
        assert!(MasterSecret::new(vec![b'x'; 32]).is_ok());
        assert!(matches!(
            MasterSecret::new(Vec::new()),
            Err(CryptoError::ShortSecret { len: 0 })
        ));
    }

    #[test]
    fn debug_never_prints_bytes() {
        let secret = MasterSecret::new(b"SECRETSECRETSECRETSECRETSECRETSE".to_vec()).unwrap();
        let shown = format!("{secret:?} {:?}", UserKey::derive(&secret, "u"));
        assert!(!shown.contains("SECRET"), "{shown}");
        assert_eq!(shown, "MasterSecret(32 bytes, redacted) UserKey(redacted)");
    }

    #[test]
    fn different_uids_give_different_keys() {
        let secret = omi_secret();
        assert_ne!(
            UserKey::derive(&secret, "a").expose_bytes(),
            UserKey::derive(&secret, "b").expose_bytes()
        );
    }

    #[test]
    fn from_env_reads_raw_utf8_or_reports_the_variable() {
        // Variable names unique to this test; the environment is process-wide.
        let missing = "CHUNK_CRYPTO_TEST_SECRET_MISSING_7f3a";
        match MasterSecret::from_env(missing) {
            Err(CryptoError::MissingEnv { var }) => assert_eq!(var, missing),
            other => panic!("expected MissingEnv, got {other:?}"),
        }
    }
}
