//! The pack construction is exactly STREAM as RustCrypto's `aead-stream` (`StreamBE32`)
//! implements it, under a per-object key computed here independently with `hkdf` (version 2:
//! from the pack root key and the place; version 1: from the Omi user key): the same frames
//! come out, byte for byte, and each side opens the other's frames.

use aead_stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{KeyInit, Payload};
use chunk_crypto::pack::{PACK_KEY_INFO, PackOpener, PackPlace, PackSealer, SealParams};
use chunk_crypto::{KeyId, MasterSecret, PackRootKey, UserKey};
use hkdf::Hkdf;
use sha2::Sha256;

fn params() -> SealParams {
    SealParams {
        key_id: KeyId::new(3),
        salt: *b"0123456789abcdef",
        nonce_prefix: *b"nonce-p",
    }
}

fn hkdf(ikm: &[u8], salt: &[u8], info: &[u8]) -> [u8; 32] {
    let mut key = [0u8; 32];
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    key
}

fn reference_cipher_v1(user: &UserKey, salt: &[u8]) -> Aes256Gcm {
    Aes256Gcm::new(&hkdf(user.expose_bytes(), salt, b"chunkvault pack v1").into())
}

/// The version-2 object key, spelled out from docs/FORMAT.md rather than through `PackPlace`.
fn reference_cipher_v2(
    root: &PackRootKey,
    uid: &str,
    conversation: &str,
    salt: &[u8],
) -> Aes256Gcm {
    let mut info = b"chunkvault pack v2".to_vec();
    for part in [uid, conversation] {
        info.extend_from_slice(&(part.len() as u64).to_be_bytes());
        info.extend_from_slice(part.as_bytes());
    }
    Aes256Gcm::new(&hkdf(root.expose_bytes(), salt, &info).into())
}

/// The worked example's two segments as the reference STREAM encryptor seals them under
/// `cipher` with the fixed nonce prefix: ("chunk 0", aad "hdr|e0"), then the final ("index",
/// aad "hdr").
fn reference_worked_example(cipher: Aes256Gcm) -> (Vec<u8>, Vec<u8>) {
    let mut reference = EncryptorBE32::from_aead(cipher, &params().nonce_prefix.into());
    let frame0 = reference
        .encrypt_next(Payload {
            msg: b"chunk 0",
            aad: b"hdr|e0",
        })
        .expect("reference seals");
    let index = reference
        .encrypt_last(Payload {
            msg: b"index",
            aad: b"hdr",
        })
        .expect("reference seals");
    (frame0, index)
}

/// `opener` opens the worked example's segments, and only at their own positions.
fn assert_opens_worked_example(opener: &PackOpener, frame0: &[u8], index: &[u8]) {
    assert_eq!(
        opener
            .open(0, b"hdr|e0", frame0, false)
            .expect("frame 0 opens"),
        b"chunk 0"
    );
    assert_eq!(
        opener
            .open(1, b"hdr", index, true)
            .expect("the index opens"),
        b"index"
    );
    assert!(opener.open(1, b"hdr", frame0, true).is_err());
}

#[test]
fn pack_frames_equal_aead_stream_be32() {
    assert_eq!(PACK_KEY_INFO, b"chunkvault pack v1");
    let root = PackRootKey::from_bytes([0x42; 32]);
    let place = PackPlace::new("alice", "conv-1");
    let frames: [&[u8]; 4] = [b"first chunk", b"", &[7; 1000], b"the index"];
    let aads: [&[u8]; 4] = [b"hdr|e0", b"hdr|e1", b"hdr|e2", b"hdr"];

    // Fresh random parameters (the production constructor); the reference uses the same ones.
    let mut ours = PackSealer::new(&root, place, KeyId::new(3)).unwrap();
    let params = ours.params();
    let reference_cipher = || reference_cipher_v2(&root, "alice", "conv-1", &params.salt);
    let mut reference = EncryptorBE32::from_aead(reference_cipher(), &params.nonce_prefix.into());
    let mut sealed = Vec::new();
    for i in 0..3 {
        let a = ours.seal(i as u32, aads[i], frames[i], false).unwrap();
        let b = reference
            .encrypt_next(Payload {
                msg: frames[i],
                aad: aads[i],
            })
            .unwrap();
        assert_eq!(a, b, "frame {i}");
        sealed.push(a);
    }
    let a = ours.seal(3, aads[3], frames[3], true).unwrap();
    let b = reference
        .encrypt_last(Payload {
            msg: frames[3],
            aad: aads[3],
        })
        .unwrap();
    assert_eq!(a, b, "final segment");
    sealed.push(a);

    // The reference decryptor opens our frames in order...
    let mut decryptor = DecryptorBE32::from_aead(reference_cipher(), &params.nonce_prefix.into());
    for i in 0..3 {
        let plain = decryptor
            .decrypt_next(Payload {
                msg: &sealed[i],
                aad: aads[i],
            })
            .unwrap();
        assert_eq!(plain, frames[i]);
    }
    let plain = decryptor
        .decrypt_last(Payload {
            msg: &sealed[3],
            aad: aads[3],
        })
        .unwrap();
    assert_eq!(plain, frames[3]);

    // ...and ours opens any one alone.
    let opener = PackOpener::new(&root, place, &params);
    assert_eq!(
        opener.open(2, aads[2], &sealed[2], false).unwrap(),
        frames[2]
    );
}

/// A version-1 known answer computed independently with Python `cryptography` 48 (HKDF-SHA256
/// and AESGCM); the same example is worked through in docs/FORMAT.md ("Encryption"). The
/// reference STREAM encryptor produces exactly these bytes and ours opens them; that our sealer
/// produces them too is the unit test `pack::tests::known_answer_seals_version_1_byte_for_byte`
/// (sealing with fixed parameters is not public API: feature `insecure-fixed-nonces`).
#[test]
fn pack_known_answer_matches_python_cryptography() {
    let user = UserKey::from_bytes([0x42; 32]);
    assert_eq!(
        hex::encode(params().to_bytes()),
        "00000003303132333435363738396162636465666e6f6e63652d70"
    );
    let frame0 = hex::decode("5e1a0daadd75d2451cb814e314c5a062c9794cfa109943").unwrap();
    let index = hex::decode("71f2c54ca5a3a03351980980034912e14fc97155b2").unwrap();

    let reference = reference_worked_example(reference_cipher_v1(&user, &params().salt));
    assert_eq!(reference, (frame0.clone(), index.clone()));
    let opener = PackOpener::v1(&user, &SealParams::from_bytes(&params().to_bytes()));
    assert_opens_worked_example(&opener, &frame0, &index);
    assert_eq!(
        hex::encode(chunk_crypto::pack::stream_nonce(b"nonce-p", 1, true)),
        "6e6f6e63652d700000000101"
    );
}

/// The version-2 known answer of docs/FORMAT.md, computed independently with Python
/// `cryptography` 48 from the master secret, the uid and the conversation (the script is in
/// that section); the sealing side is `pack::tests::known_answer_seals_version_2_byte_for_byte`.
#[test]
fn pack_v2_known_answer_matches_python_cryptography() {
    let secret = MasterSecret::new(format!("omi_{}", "0".repeat(60)).into_bytes()).unwrap();
    let root = PackRootKey::derive(&secret, "test-uid");
    let frame0 = hex::decode("76f41f3bb46624d49dfc477eca166d8f0f9d1579088829").unwrap();
    let index = hex::decode("cd32b8d2253bd47f115c19f8d66c4c42ea8f7206eb").unwrap();
    let reference = reference_worked_example(reference_cipher_v2(
        &root,
        "test-uid",
        "conv-1",
        &params().salt,
    ));
    assert_eq!(reference, (frame0.clone(), index.clone()));
    let opener = PackOpener::new(&root, PackPlace::new("test-uid", "conv-1"), &params());
    assert_opens_worked_example(&opener, &frame0, &index);
    // The same bytes as another conversation's, or as a version-1 pack, do not open.
    let elsewhere = PackOpener::new(&root, PackPlace::new("test-uid", "conv-2"), &params());
    assert!(elsewhere.open(1, b"hdr", &index, true).is_err());
    let v1 = PackOpener::v1(&UserKey::derive(&secret, "test-uid"), &params());
    assert!(v1.open(1, b"hdr", &index, true).is_err());
}
