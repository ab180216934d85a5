//! Omi's sealed frames: seal one chunk as a frame, open a frame body, open a whole object.
//!
//! A frame is `be_u32 L || nonce[12] || ciphertext || tag[16]` with `L = 28 + plaintext length`
//! (compat doc §2.2): AES-256-GCM under the user's [`UserKey`], a fresh random nonce from the OS
//! RNG per frame, no associated data. An `.enc`, `.batch.enc` or `.opus.enc` object is one or
//! more frames back to back (never zero: an empty object is [`CryptoError::EmptyObject`]);
//! [`open_object`] opens them one at a time, so a caller can handle each chunk on its own (the
//! service trims odd lengths per frame, not per object).
//!
//! Omi frames carry no key id: they are opened with the key ring's Omi key
//! ([`crate::Keyring::omi_key`]).

use std::fmt;
use std::ops::Range;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use chunk_format::frames::{FRAME_PREFIX_LEN, Frames, frame_prefix};

use crate::error::{CryptoError, Result};
use crate::keys::UserKey;

/// Length of an Omi frame's nonce.
pub const NONCE_LEN: usize = 12;

/// Length of the AES-GCM tag at the end of a frame body.
pub const TAG_LEN: usize = crate::TAG_LEN;

/// Bytes a frame body adds to its plaintext: nonce and tag (the `28` in `L = 28 + len`).
pub const BODY_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// Bytes a whole frame adds to its plaintext: length prefix, nonce and tag.
pub const FRAME_OVERHEAD: usize = FRAME_PREFIX_LEN + BODY_OVERHEAD;

/// Seals `plaintext` as one Omi frame under a fresh random nonce and appends the whole frame
/// (length prefix included) to `out`.
///
/// On error `out` is left as it was.
///
/// ```
/// use chunk_crypto::{UserKey, omi};
///
/// let key = UserKey::from_bytes([7; 32]);
/// let mut object = Vec::new();
/// omi::seal_frame(&key, b"first chunk", &mut object)?;
/// omi::seal_frame(&key, b"second", &mut object)?;
/// assert_eq!(object.len(), 11 + 6 + 2 * omi::FRAME_OVERHEAD);
/// let chunks: Vec<Vec<u8>> = omi::open_object(&key, &object).collect::<Result<_, _>>()?;
/// assert_eq!(chunks, [b"first chunk".to_vec(), b"second".to_vec()]);
/// # Ok::<(), chunk_crypto::CryptoError>(())
/// ```
pub fn seal_frame(key: &UserKey, plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(CryptoError::Rng)?;
    seal_with(&cipher(key), &nonce, plaintext, out)
}

/// Like [`seal_frame`] with a caller-chosen nonce. **Only for test vectors; never enable the
/// `insecure-fixed-nonces` feature in production: it allows nonce reuse.** Sealing two
/// plaintexts with one key and one nonce reveals both and lets anyone forge frames.
///
/// Public only with the non-default cargo feature `insecure-fixed-nonces` (and inside this
/// crate's unit tests).
#[cfg(any(test, feature = "insecure-fixed-nonces"))]
pub fn seal_frame_with_nonce_for_tests(
    key: &UserKey,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    seal_with(&cipher(key), nonce, plaintext, out)
}

/// Opens one frame body (`nonce || ciphertext || tag`, without the length prefix) and returns
/// the plaintext. `index` is the frame's position in its object, used in errors.
pub fn open_frame_body(key: &UserKey, body: &[u8], index: usize) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    open_body_with(&cipher(key), body, index, &mut out)?;
    Ok(out)
}

/// Like [`open_frame_body`], appending the plaintext to `out` (reuse one buffer across frames
/// to avoid an allocation per frame). On error `out` is left as it was.
pub fn open_frame_body_into(
    key: &UserKey,
    body: &[u8],
    index: usize,
    out: &mut Vec<u8>,
) -> Result<()> {
    open_body_with(&cipher(key), body, index, out)
}

/// Walks the frames of an Omi encrypted object (`.enc`, `.batch.enc`, `.opus.enc`) and opens
/// each one.
///
/// Yields one plaintext per frame, in order; on the first malformed or unauthentic frame it
/// yields that error (naming the frame) and stops. An empty object (0 bytes) is not zero
/// chunks: it yields one [`CryptoError::EmptyObject`] and stops, so a whole-object reader
/// (`collect::<Result<Vec<_>, _>>()`) fails on it.
pub fn open_object<'a>(key: &UserKey, object: &'a [u8]) -> OpenObject<'a> {
    OpenObject {
        frames: Frames::new(object),
        cipher: cipher(key),
        empty: object.is_empty(),
        failed: false,
    }
}

/// Opens every frame of an Omi encrypted object in place: each frame's ciphertext is
/// replaced by its plaintext inside `object`, and the plaintexts' ranges in `object` are
/// returned in order. Peak memory is the object itself (no second buffer), which is what lets a
/// reader keep several objects in flight within one memory budget. Errors are those of
/// [`open_object`] (an empty object, a malformed or unauthentic frame, naming it); on error
/// `object` holds a mix of ciphertext and plaintext and must be discarded.
pub fn open_object_in_place(key: &UserKey, object: &mut [u8]) -> Result<Vec<Range<usize>>> {
    if object.is_empty() {
        return Err(CryptoError::EmptyObject);
    }
    // Where each frame's body is (walked before anything is changed).
    let mut bodies = Vec::new();
    let mut frames = Frames::new(object);
    loop {
        let start = frames.offset() + FRAME_PREFIX_LEN;
        match frames.next() {
            None => break,
            Some(Ok(frame)) => bodies.push((frame.index, start..start + frame.body.len())),
            Some(Err(source)) => {
                return Err(CryptoError::Frame {
                    index: frame_error_index(&source),
                    source,
                });
            }
        }
    }
    let cipher = cipher(key);
    let mut plaintexts = Vec::with_capacity(bodies.len());
    for (index, body) in bodies {
        let too_short = || CryptoError::FrameTooShort {
            index,
            len: body.len(),
            min: BODY_OVERHEAD,
        };
        let region = object.get_mut(body.clone()).ok_or_else(too_short)?;
        let (nonce, rest) = region
            .split_first_chunk_mut::<NONCE_LEN>()
            .ok_or_else(too_short)?;
        let nonce = Nonce::from(*nonce);
        let (ciphertext, tag) = rest
            .split_last_chunk_mut::<TAG_LEN>()
            .ok_or_else(too_short)?;
        let tag = Tag::from(*tag);
        cipher
            .decrypt_inout_detached(&nonce, &[], ciphertext.into(), &tag)
            .map_err(|_| CryptoError::Decrypt { index })?;
        plaintexts.push(body.start + NONCE_LEN..body.end - TAG_LEN);
    }
    Ok(plaintexts)
}

/// Re-seals every frame of `object` from key `from` to key `to` (fresh nonces), appending the
/// new object to `out`, and returns the number of frames (at least 1). Used for key rotation:
/// the plaintext framing is kept, so chunk boundaries survive. An empty `object` is
/// [`CryptoError::EmptyObject`]. On error `out` is left as it was.
pub fn reseal_object(
    from: &UserKey,
    to: &UserKey,
    object: &[u8],
    out: &mut Vec<u8>,
) -> Result<usize> {
    let start = out.len();
    let sealer = cipher(to);
    let mut plain = Vec::new();
    let mut count = 0;
    let mut opened = open_object(from, object);
    let result = loop {
        plain.clear();
        match opened.next_into(&mut plain) {
            None => break Ok(count),
            Some(Err(err)) => break Err(err),
            Some(Ok(())) => {}
        }
        let mut nonce = [0u8; NONCE_LEN];
        if let Err(err) = getrandom::fill(&mut nonce) {
            break Err(CryptoError::Rng(err));
        }
        if let Err(err) = seal_with(&sealer, &nonce, &plain, out) {
            break Err(err);
        }
        count += 1;
    };
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Iterator returned by [`open_object`]: one `Result<plaintext>` per frame.
pub struct OpenObject<'a> {
    frames: Frames<'a>,
    cipher: Aes256Gcm,
    /// The object has 0 bytes: the first call yields [`CryptoError::EmptyObject`].
    empty: bool,
    failed: bool,
}

impl OpenObject<'_> {
    /// Opens the next frame, appending its plaintext to `out` instead of allocating; `None`
    /// when the object is used up or after an error. For an empty object the first call is
    /// `Some(Err(`[`CryptoError::EmptyObject`]`))`.
    pub fn next_into(&mut self, out: &mut Vec<u8>) -> Option<Result<()>> {
        if self.failed {
            return None;
        }
        if self.empty {
            self.failed = true;
            return Some(Err(CryptoError::EmptyObject));
        }
        let result = match self.frames.next()? {
            Ok(frame) => open_body_with(&self.cipher, frame.body, frame.index, out),
            Err(source) => Err(CryptoError::Frame {
                index: frame_error_index(&source),
                source,
            }),
        };
        self.failed = result.is_err();
        Some(result)
    }
}

impl Iterator for OpenObject<'_> {
    type Item = Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut out = Vec::new();
        self.next_into(&mut out).map(|r| r.map(|()| out))
    }
}

impl std::iter::FusedIterator for OpenObject<'_> {}

impl fmt::Debug for OpenObject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenObject")
            .field("offset", &self.frames.offset())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

fn frame_error_index(err: &chunk_format::frames::FrameError) -> usize {
    use chunk_format::frames::FrameError;
    match err {
        FrameError::TruncatedLength { index, .. }
        | FrameError::LengthPastEnd { index, .. }
        | FrameError::ZeroLength { index, .. }
        | FrameError::TooLarge { index, .. } => *index,
        // Only produced by encoders, never by the iterator.
        FrameError::BodyTooLong { .. } => 0,
    }
}

fn cipher(key: &UserKey) -> Aes256Gcm {
    Aes256Gcm::new(key.expose_bytes().into())
}

/// Appends `prefix || nonce || ciphertext || tag`, encrypting straight into `out`.
fn seal_with(
    cipher: &Aes256Gcm,
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    let too_long = || CryptoError::PlaintextTooLong {
        len: plaintext.len(),
    };
    let body_len = plaintext
        .len()
        .checked_add(BODY_OVERHEAD)
        .ok_or_else(too_long)?;
    let prefix = frame_prefix(body_len).map_err(|_| too_long())?;
    let start = out.len();
    out.reserve(FRAME_PREFIX_LEN + body_len);
    out.extend_from_slice(&prefix);
    out.extend_from_slice(nonce);
    crate::seal_append(cipher, &Nonce::from(*nonce), &[], plaintext, out).map_err(|()| {
        out.truncate(start);
        too_long()
    })
}

/// Opens `nonce || ciphertext || tag`, decrypting straight into the end of `out`.
fn open_body_with(cipher: &Aes256Gcm, body: &[u8], index: usize, out: &mut Vec<u8>) -> Result<()> {
    let too_short = || CryptoError::FrameTooShort {
        index,
        len: body.len(),
        min: BODY_OVERHEAD,
    };
    let (nonce, rest) = body
        .split_first_chunk::<NONCE_LEN>()
        .ok_or_else(too_short)?;
    let (ciphertext, tag) = rest.split_last_chunk::<TAG_LEN>().ok_or_else(too_short)?;
    crate::open_in_place(
        cipher,
        &Nonce::from(*nonce),
        &[],
        ciphertext,
        &Tag::from(*tag),
        out,
    )
    .map_err(|()| CryptoError::Decrypt { index })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_in_place_equals_opening_and_refuses_what_it_refuses() {
        let key = UserKey::from_bytes([7; 32]);
        let mut object = Vec::new();
        for chunk in [&b"first chunk"[..], b"", b"third"] {
            seal_frame(&key, chunk, &mut object).unwrap();
        }
        let expected: Vec<Vec<u8>> = open_object(&key, &object).collect::<Result<_>>().unwrap();
        let mut in_place = object.clone();
        let ranges = open_object_in_place(&key, &mut in_place).unwrap();
        let got: Vec<Vec<u8>> = ranges
            .iter()
            .map(|r| in_place[r.clone()].to_vec())
            .collect();
        assert_eq!(got, expected);
        // A flipped ciphertext bit, a truncated object, an empty one, another key.
        let mut damaged = object.clone();
        damaged[FRAME_PREFIX_LEN + NONCE_LEN] ^= 1;
        assert!(matches!(
            open_object_in_place(&key, &mut damaged),
            Err(CryptoError::Decrypt { index: 0 })
        ));
        let mut cut = object[..object.len() - 1].to_vec();
        assert!(matches!(
            open_object_in_place(&key, &mut cut),
            Err(CryptoError::Frame { index: 2, .. })
        ));
        assert!(matches!(
            open_object_in_place(&key, &mut []),
            Err(CryptoError::EmptyObject)
        ));
        let other = UserKey::from_bytes([8; 32]);
        assert!(open_object_in_place(&other, &mut object.clone()).is_err());
    }

    fn vector_key() -> UserKey {
        let mut key = [0u8; 32];
        hex::decode_to_slice(
            "9510276407860d215713e7cad3e7392ef969a5b8b8ed264844432fa72386c39b",
            &mut key,
        )
        .unwrap();
        UserKey::from_bytes(key)
    }

    const VECTOR_FRAME: &str =
        "00000020000102030405060708090a0b055946e2200338232225c0a57f96e804ce7d91a3";

    #[test]
    fn compat_vector_frame_seals_and_opens() {
        let nonce: [u8; 12] = std::array::from_fn(|i| i as u8);
        let mut out = vec![0xaa]; // appends after existing bytes
        seal_frame_with_nonce_for_tests(&vector_key(), &nonce, &[1, 0, 2, 0], &mut out).unwrap();
        assert_eq!(hex::encode(&out[1..]), VECTOR_FRAME);
        assert_eq!(out.len(), 1 + 36);

        let frame = hex::decode(VECTOR_FRAME).unwrap();
        assert_eq!(
            open_frame_body(&vector_key(), &frame[4..], 0).unwrap(),
            [1, 0, 2, 0]
        );
        let opened: Vec<_> = open_object(&vector_key(), &frame).collect();
        assert_eq!(opened.len(), 1);
        assert_eq!(opened[0].as_ref().unwrap(), &[1, 0, 2, 0]);
    }

    #[test]
    fn random_nonces_differ_and_lengths_follow_the_formula() {
        let key = vector_key();
        let (mut a, mut b) = (Vec::new(), Vec::new());
        seal_frame(&key, &[5; 100], &mut a).unwrap();
        seal_frame(&key, &[5; 100], &mut b).unwrap();
        assert_ne!(a[4..16], b[4..16], "two frames drew the same nonce");
        assert_eq!(a.len(), 100 + FRAME_OVERHEAD);
        assert_eq!(a[..4], (100u32 + 28).to_be_bytes());
    }

    #[test]
    fn empty_plaintext_is_a_28_byte_body() {
        // One frame of 0 plaintext bytes is one (empty) chunk, unlike an object of 0 bytes.
        let key = vector_key();
        let mut out = Vec::new();
        seal_frame(&key, &[], &mut out).unwrap();
        assert_eq!(out.len(), FRAME_OVERHEAD);
        let opened: Vec<Vec<u8>> = open_object(&key, &out).collect::<Result<_>>().unwrap();
        assert_eq!(opened, [Vec::<u8>::new()]);
    }

    #[test]
    fn next_into_appends_and_leaves_out_untouched_on_error() {
        let key = vector_key();
        let mut object = Vec::new();
        seal_frame(&key, b"abc", &mut object).unwrap();
        seal_frame(&key, b"de", &mut object).unwrap();
        let last = object.len() - 1;
        object[last] ^= 1;
        let mut opened = open_object(&key, &object);
        let mut out = b"x".to_vec();
        assert!(matches!(opened.next_into(&mut out), Some(Ok(()))));
        assert_eq!(out, b"xabc");
        assert!(matches!(
            opened.next_into(&mut out),
            Some(Err(CryptoError::Decrypt { index: 1 }))
        ));
        assert_eq!(out, b"xabc");
        assert!(opened.next_into(&mut out).is_none());
    }

    #[test]
    fn empty_object_is_a_typed_error_not_zero_chunks() {
        let key = vector_key();
        let mut opened = open_object(&key, &[]);
        assert!(matches!(opened.next(), Some(Err(CryptoError::EmptyObject))));
        assert!(opened.next().is_none(), "the walk stops after the error");
        let whole: Result<Vec<Vec<u8>>> = open_object(&key, &[]).collect();
        let err = whole.unwrap_err();
        assert!(matches!(err, CryptoError::EmptyObject));
        assert_eq!(
            err.to_string(),
            "the sealed object is empty (0 frames): truncated?"
        );
        let mut out = b"keep".to_vec();
        let mut opened = open_object(&key, &[]);
        assert!(matches!(
            opened.next_into(&mut out),
            Some(Err(CryptoError::EmptyObject))
        ));
        assert!(opened.next_into(&mut out).is_none());
        assert_eq!(out, b"keep");
    }

    #[test]
    fn reseal_of_an_empty_object_is_a_typed_error() {
        let (old, new) = (vector_key(), UserKey::from_bytes([9; 32]));
        let mut out = b"keep".to_vec();
        assert!(matches!(
            reseal_object(&old, &new, &[], &mut out),
            Err(CryptoError::EmptyObject)
        ));
        assert_eq!(out, b"keep");
    }

    #[test]
    fn reseal_keeps_frames_and_switches_keys() {
        let (old, new) = (vector_key(), UserKey::from_bytes([9; 32]));
        let mut object = Vec::new();
        seal_frame(&old, b"one", &mut object).unwrap();
        seal_frame(&old, b"two!", &mut object).unwrap();
        let mut resealed = Vec::new();
        assert_eq!(
            reseal_object(&old, &new, &object, &mut resealed).unwrap(),
            2
        );
        assert_eq!(resealed.len(), object.len());
        let plain: Vec<Vec<u8>> = open_object(&new, &resealed).collect::<Result<_>>().unwrap();
        assert_eq!(plain, [b"one".to_vec(), b"two!".to_vec()]);
        assert!(matches!(
            open_object(&old, &resealed).next(),
            Some(Err(CryptoError::Decrypt { index: 0 }))
        ));
        // A failing reseal leaves the output as it was.
        let mut out = b"keep".to_vec();
        assert!(reseal_object(&new, &old, &object, &mut out).is_err());
        assert_eq!(out, b"keep");
    }
}
