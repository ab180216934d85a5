//! Keys and sealing for chunkvault: Omi per-user keys and frames, STREAM-sealed packs, key ids.
//!
//! ```
//! use chunk_crypto::{KeyId, Keyring, MasterSecret, omi, pack};
//!
//! // Omi's ENCRYPTION_SECRET, used as raw bytes.
//! let secret = MasterSecret::new(format!("omi_{}", "0".repeat(60)).into_bytes())?;
//! let ring = Keyring::single(KeyId::new(1), secret);
//!
//! // An Omi `.batch.enc`: one frame per chunk, opened frame by frame.
//! let key = ring.omi_key("oracle-uid")?;
//! let mut object = Vec::new();
//! omi::seal_frame(&key, &[1, 0, 2, 0], &mut object)?;
//! omi::seal_frame(&key, &[3, 0], &mut object)?;
//! let chunks: Vec<Vec<u8>> = omi::open_object(&key, &object).collect::<Result<_, _>>()?;
//! assert_eq!(chunks, [vec![1, 0, 2, 0], vec![3, 0]]);
//!
//! // A native pack: frames sealed in order, any frame opened alone, the key bound to the
//! // pack's user and conversation.
//! let place = pack::PackPlace::new("oracle-uid", "conv-1");
//! let mut sealer = ring.pack_sealer(place)?;
//! let header = sealer.params().to_bytes();
//! let frame0 = sealer.seal(0, &header, b"chunk", true)?;
//! let opener = ring.pack_opener(place, &sealer.seal_info())?;
//! assert_eq!(opener.open(0, &header, &frame0, true)?, b"chunk");
//! # Ok::<(), chunk_crypto::CryptoError>(())
//! ```
//!
//! - [`MasterSecret`] and [`UserKey`]: the Omi-exact key derivation (HKDF-SHA256, salt = uid,
//!   info = `user-data-encryption`).
//! - [`omi`]: Omi frames (`be_u32 L || nonce || ciphertext || tag`, no associated data).
//! - [`PackRootKey`] and [`pack`]: per-object keys bound to the pack's place
//!   ([`pack::PackPlace`]) and the STREAM nonce for native packs; [`pack::PackSealer`] and
//!   [`pack::PackOpener`] implement `chunk-format`'s pack sealing hooks.
//! - [`Keyring`] and [`KeyId`]: several secrets for rotation and crypto-shredding;
//!   [`keyring_file`] reads and writes them as a strictly parsed text file.
//!
//! Byte layouts are documented in `docs/FORMAT.md` (section "Encryption").

mod error;
mod keyring;
pub mod keyring_file;
mod keys;
pub mod omi;
pub mod pack;
mod pack_format;

pub use error::{CryptoError, Result};
pub use keyring::{KeyId, Keyring};
pub use keys::{
    KEY_LEN, MIN_SECRET_LEN, MasterSecret, OMI_USER_KEY_INFO, PACK_ROOT_INFO, PackRootKey, UserKey,
};

/// Length of the AES-GCM authentication tag (Omi frames and pack frames).
pub const TAG_LEN: usize = 16;

use aes_gcm::aead::AeadInOut;
use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{Aes256Gcm, Nonce, Tag};

/// AES-GCM nonce type (96 bits).
type Nonce96 = Nonce<aes_gcm::aead::consts::U12>;

/// Appends `ciphertext || tag` of `plaintext` to `out`, encrypting straight from `plaintext`
/// into `out` (no intermediate copy); on failure truncates `out` back.
fn seal_append(
    cipher: &Aes256Gcm,
    nonce: &Nonce96,
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> std::result::Result<(), ()> {
    let start = out.len();
    out.reserve(plaintext.len() + TAG_LEN);
    out.resize(start + plaintext.len(), 0);
    let sealed = InOutBuf::new(plaintext, &mut out[start..])
        .map_err(|_| ())
        .and_then(|buf| {
            cipher
                .encrypt_inout_detached(nonce, aad, buf)
                .map_err(|_| ())
        });
    match sealed {
        Ok(tag) => {
            out.extend_from_slice(&tag);
            Ok(())
        }
        Err(()) => {
            out.truncate(start);
            Err(())
        }
    }
}

/// Appends the plaintext of `ciphertext` to `out`, decrypting straight into `out`; on failure
/// (authentication) truncates `out` back, so no unauthenticated bytes stay behind.
fn open_in_place(
    cipher: &Aes256Gcm,
    nonce: &Nonce96,
    aad: &[u8],
    ciphertext: &[u8],
    tag: &Tag,
    out: &mut Vec<u8>,
) -> std::result::Result<(), ()> {
    let start = out.len();
    out.resize(start + ciphertext.len(), 0);
    let opened = InOutBuf::new(ciphertext, &mut out[start..])
        .map_err(|_| ())
        .and_then(|buf| {
            cipher
                .decrypt_inout_detached(nonce, aad, buf, tag)
                .map_err(|_| ())
        });
    if opened.is_err() {
        out.truncate(start);
    }
    opened
}
