//! The tamper suite: every way a stored object can be altered, replayed or opened with the
//! wrong key is one test, and each must fail to open with a typed error naming the frame.

use chunk_crypto::pack::{KeyScheme, PackOpener, PackPlace, PackSealer, SealParams, sealed_len};
use chunk_crypto::{CryptoError, KeyId, Keyring, MasterSecret, PackRootKey, UserKey, omi};
use chunk_format::frames::FrameError;
use chunk_format::pack::SealInfo;

const UID: &str = "oracle-uid";
/// The conversation every sealed pack of these tests belongs to.
const CONV: &str = "conv-1";

fn secret(byte: u8) -> MasterSecret {
    MasterSecret::new(vec![byte; 64]).expect("64-byte secret")
}

fn ring() -> Keyring {
    let mut ring = Keyring::single(KeyId::new(1), secret(b'a'));
    ring.insert(KeyId::new(2), secret(b'b')).expect("k2 is new");
    ring
}

// ---------------------------------------------------------------------------------------------
// Omi frames
// ---------------------------------------------------------------------------------------------

/// Three frames of distinct plaintexts (10, 20, 30 bytes) under `key`, and the frames' offsets.
fn omi_object(key: &UserKey) -> (Vec<u8>, [usize; 3]) {
    let mut object = Vec::new();
    let mut offsets = [0; 3];
    for (i, offset) in offsets.iter_mut().enumerate() {
        *offset = object.len();
        let plain = vec![i as u8 + 1; 10 * (i + 1)];
        omi::seal_frame(key, &plain, &mut object).expect("seal");
    }
    (object, offsets)
}

/// Opens every frame; returns how many opened before the error, and the error.
fn omi_open_until_error(key: &UserKey, object: &[u8]) -> (usize, CryptoError) {
    let mut opened = 0;
    for item in omi::open_object(key, object) {
        match item {
            Ok(_) => opened += 1,
            Err(err) => return (opened, err),
        }
    }
    panic!("all {opened} frames opened; expected a failure");
}

fn assert_omi_decrypt_fails_at(object: &[u8], key: &UserKey, frame: usize) {
    let (opened, err) = omi_open_until_error(key, object);
    assert_eq!(opened, frame, "frames before the bad one must open");
    assert!(
        matches!(err, CryptoError::Decrypt { index } if index == frame),
        "{err:?}"
    );
    assert!(err.to_string().contains(&format!("frame {frame}")), "{err}");
}

#[test]
fn omi_wrong_user_fails() {
    let ring = ring();
    let (object, _) = omi_object(&ring.omi_key(UID).unwrap());
    assert_omi_decrypt_fails_at(&object, &ring.omi_key("other-uid").unwrap(), 0);
}

#[test]
fn omi_wrong_secret_fails() {
    let mut ring = ring();
    let (object, _) = omi_object(&ring.omi_key(UID).unwrap());
    ring.set_omi_key(KeyId::new(2)).unwrap();
    assert_omi_decrypt_fails_at(&object, &ring.omi_key(UID).unwrap(), 0);
}

#[test]
fn omi_flipped_bit_in_nonce_fails() {
    let key = ring().omi_key(UID).unwrap();
    let (mut object, offsets) = omi_object(&key);
    object[offsets[1] + 4 + 5] ^= 0x10; // nonce byte 5 of frame 1
    assert_omi_decrypt_fails_at(&object, &key, 1);
}

#[test]
fn omi_flipped_bit_in_ciphertext_fails() {
    let key = ring().omi_key(UID).unwrap();
    let (mut object, offsets) = omi_object(&key);
    object[offsets[2] + 4 + 12 + 7] ^= 0x01; // ciphertext byte 7 of frame 2
    assert_omi_decrypt_fails_at(&object, &key, 2);
}

#[test]
fn omi_flipped_bit_in_tag_fails() {
    let key = ring().omi_key(UID).unwrap();
    let (mut object, offsets) = omi_object(&key);
    let tag_start = offsets[1] - omi::TAG_LEN; // the tag of frame 0 ends where frame 1 starts
    object[tag_start + 15] ^= 0x80;
    assert_omi_decrypt_fails_at(&object, &key, 0);
}

#[test]
fn omi_truncated_object_names_the_cut_frame() {
    let key = ring().omi_key(UID).unwrap();
    let (object, offsets) = omi_object(&key);
    // Omi's own observation (compat §2.3): the last 5 bytes cut off.
    let cut = &object[..object.len() - 5];
    let (opened, err) = omi_open_until_error(&key, cut);
    assert_eq!(opened, 2);
    match err {
        CryptoError::Frame {
            index: 2,
            source: FrameError::LengthPastEnd {
                offset, declared, ..
            },
        } => {
            assert_eq!(offset, offsets[2]);
            assert_eq!(declared, 30 + 28);
        }
        other => panic!("expected a framing error at frame 2, got {other:?}"),
    }
}

#[test]
fn omi_truncated_single_frame_names_frame_0() {
    let key = ring().omi_key(UID).unwrap();
    let mut object = Vec::new();
    omi::seal_frame(&key, &[9; 64], &mut object).unwrap();
    let (opened, err) = omi_open_until_error(&key, &object[..object.len() - 1]);
    assert_eq!(opened, 0);
    assert!(
        matches!(err, CryptoError::Frame { index: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn omi_body_shorter_than_nonce_and_tag_fails() {
    let key = ring().omi_key(UID).unwrap();
    for len in [1u32, 12, 27] {
        let mut object = len.to_be_bytes().to_vec();
        object.resize(4 + len as usize, 0);
        let (_, err) = omi_open_until_error(&key, &object);
        assert!(
            matches!(err, CryptoError::FrameTooShort { index: 0, len: l, min: 28 } if l == len as usize),
            "{err:?}"
        );
    }
}

#[test]
fn omi_trailing_partial_prefix_fails_after_the_good_frames() {
    let key = ring().omi_key(UID).unwrap();
    let (mut object, _) = omi_object(&key);
    object.extend_from_slice(&[0, 0]);
    let (opened, err) = omi_open_until_error(&key, &object);
    assert_eq!(opened, 3);
    assert!(
        matches!(
            err,
            CryptoError::Frame {
                index: 3,
                source: FrameError::TruncatedLength { remaining: 2, .. }
            }
        ),
        "{err:?}"
    );
}

#[test]
fn omi_altered_length_prefix_fails() {
    let key = ring().omi_key(UID).unwrap();
    let (object, offsets) = omi_object(&key);
    // One byte shorter: frame 1 loses its last tag byte to frame 2's prefix, so frame 1 fails
    // to authenticate.
    let mut shorter = object.clone();
    shorter[offsets[1] + 3] -= 1;
    assert_omi_decrypt_fails_at(&shorter, &key, 1);
    // Much longer: frame 1 runs past the end of the object.
    let mut longer = object;
    longer[offsets[1] + 1] ^= 0x40;
    let (opened, err) = omi_open_until_error(&key, &longer);
    assert_eq!(opened, 1);
    assert!(
        matches!(err, CryptoError::Frame { index: 1, .. }),
        "{err:?}"
    );
}

/// Omi's format has no frame counter or object binding: whole frames can be reordered or moved
/// between objects of the same user and still open. This test records that limitation (the
/// native pack fixes it, see the `pack_*` tests below).
#[test]
fn omi_frames_are_not_bound_to_position_or_object() {
    let key = ring().omi_key(UID).unwrap();
    let (object, offsets) = omi_object(&key);
    let mut swapped = object[offsets[1]..offsets[2]].to_vec();
    swapped.extend_from_slice(&object[..offsets[1]]);
    let plain: Vec<Vec<u8>> = omi::open_object(&key, &swapped)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(plain, [vec![2; 20], vec![1; 10]]);
}

// ---------------------------------------------------------------------------------------------
// Packs
// ---------------------------------------------------------------------------------------------

/// A sealed pack as the pack format will lay it out: a header (here: the seal parameters plus
/// some codec bytes), per-frame index entries, frames sealed with `header || entry` as the
/// associated data, and the index sealed as the final segment.
struct Pack {
    header: Vec<u8>,
    entries: Vec<Vec<u8>>,
    frames: Vec<Vec<u8>>,
}

impl Pack {
    const CHUNKS: usize = 3;

    fn seal(ring: &Keyring, uid: &str) -> Pack {
        let mut sealer = ring
            .pack_sealer(PackPlace::new(uid, CONV))
            .expect("active key");
        let mut header = b"CVPK\x01codec=pcm16;rate=16000;".to_vec();
        header.extend_from_slice(&sealer.params().to_bytes());
        let mut entries = Vec::new();
        let mut frames = Vec::new();
        for i in 0..Pack::CHUNKS {
            let plain = vec![i as u8 + 0x40; 100 + i];
            let mut entry = format!("start={};", 1000 * i).into_bytes();
            entry.extend_from_slice(&(sealed_len(plain.len()) as u32).to_be_bytes());
            let sealed = sealer
                .seal(i as u32, &aad(&header, &entry), &plain, false)
                .expect("in-order frame");
            entries.push(entry);
            frames.push(sealed);
        }
        // The index is the final segment; its "entry" is empty.
        let index = entries.concat();
        frames.push(
            sealer
                .seal(Pack::CHUNKS as u32, &header, &index, true)
                .expect("final segment"),
        );
        entries.push(Vec::new());
        Pack {
            header,
            entries,
            frames,
        }
    }

    fn params(&self) -> SealParams {
        let tail = &self.header[self.header.len() - chunk_crypto::pack::SEAL_PARAMS_LEN..];
        SealParams::from_bytes(tail.try_into().expect("27 bytes"))
    }

    fn last(&self) -> usize {
        self.frames.len() - 1
    }

    /// Opens frame `i` as a reader would: counter `i`, `header || entries[i]`, last flag for
    /// the final segment.
    fn open(&self, opener: &PackOpener, i: usize) -> Result<Vec<u8>, CryptoError> {
        opener.open(
            i as u32,
            &aad(&self.header, &self.entries[i]),
            &self.frames[i],
            i == self.last(),
        )
    }

    /// What a version-2 header records for these parameters.
    fn seal_info(&self) -> SealInfo {
        seal_info(self.params())
    }

    fn opener(&self, ring: &Keyring, uid: &str) -> PackOpener {
        ring.pack_opener(PackPlace::new(uid, CONV), &self.seal_info())
            .expect("key id in the ring")
    }
}

fn seal_info(params: SealParams) -> SealInfo {
    SealInfo {
        scheme: KeyScheme::V2,
        key_id: params.key_id.get(),
        salt: params.salt,
        nonce_prefix: params.nonce_prefix,
    }
}

fn aad(header: &[u8], entry: &[u8]) -> Vec<u8> {
    [header, entry].concat()
}

fn assert_decrypt_fails(result: Result<Vec<u8>, CryptoError>, frame: usize) {
    match result {
        Err(CryptoError::Decrypt { index }) => assert_eq!(index, frame),
        other => panic!("expected Decrypt at frame {frame}, got {other:?}"),
    }
}

#[test]
fn pack_round_trip_opens_every_frame_alone() {
    let ring = ring();
    let pack = Pack::seal(&ring, UID);
    let opener = pack.opener(&ring, UID);
    for i in (0..pack.frames.len()).rev() {
        let plain = pack.open(&opener, i).unwrap();
        if i < Pack::CHUNKS {
            assert_eq!(plain, vec![i as u8 + 0x40; 100 + i]);
        } else {
            assert_eq!(plain, pack.entries.concat());
        }
    }
}

#[test]
fn pack_reordered_frames_fail() {
    let ring = ring();
    let mut pack = Pack::seal(&ring, UID);
    pack.frames.swap(0, 1);
    pack.entries.swap(0, 1); // even with the index entries moved along
    let opener = pack.opener(&ring, UID);
    assert_decrypt_fails(pack.open(&opener, 0), 0);
    assert_decrypt_fails(pack.open(&opener, 1), 1);
    assert!(pack.open(&opener, 2).is_ok());
}

#[test]
fn pack_dropped_final_segment_fails() {
    let ring = ring();
    let mut pack = Pack::seal(&ring, UID);
    pack.frames.pop();
    pack.entries.pop();
    // The reader now takes frame 2 as the final segment: it was sealed as non-final.
    let opener = pack.opener(&ring, UID);
    assert_decrypt_fails(pack.open(&opener, 2), 2);
}

#[test]
fn pack_non_final_frame_cannot_pose_as_final() {
    let ring = ring();
    let pack = Pack::seal(&ring, UID);
    let opener = pack.opener(&ring, UID);
    let aad0 = aad(&pack.header, &pack.entries[0]);
    assert_decrypt_fails(opener.open(0, &aad0, &pack.frames[0], true), 0);
    let last = pack.last();
    assert_decrypt_fails(
        opener.open(last as u32, &pack.header, &pack.frames[last], false),
        last,
    );
}

#[test]
fn pack_frame_from_another_object_fails() {
    let ring = ring();
    let mut pack = Pack::seal(&ring, UID);
    let other = Pack::seal(&ring, UID); // same user, same key id, same layout
    pack.frames[1] = other.frames[1].clone();
    pack.entries[1] = other.entries[1].clone();
    let opener = pack.opener(&ring, UID);
    assert_decrypt_fails(pack.open(&opener, 1), 1);
    assert!(pack.open(&opener, 0).is_ok());
}

#[test]
fn pack_header_change_fails() {
    let ring = ring();
    let pack = Pack::seal(&ring, UID);
    let opener = pack.opener(&ring, UID);
    // Any single changed header byte outside the seal parameters (those change the key, see
    // the key-id and other-object tests).
    let codec_bytes = pack.header.len() - chunk_crypto::pack::SEAL_PARAMS_LEN;
    for byte in 0..codec_bytes {
        let mut header = pack.header.clone();
        header[byte] ^= 0x01;
        let tampered = Pack {
            header,
            entries: pack.entries.clone(),
            frames: pack.frames.clone(),
        };
        for i in 0..tampered.frames.len() {
            assert_decrypt_fails(tampered.open(&opener, i), i);
        }
    }
}

#[test]
fn pack_index_entry_change_fails() {
    let ring = ring();
    let mut pack = Pack::seal(&ring, UID);
    pack.entries[1][0] ^= 0x02;
    let opener = pack.opener(&ring, UID);
    assert_decrypt_fails(pack.open(&opener, 1), 1);
    assert!(pack.open(&opener, 0).is_ok());
}

#[test]
fn pack_wrong_user_fails() {
    let ring = ring();
    let pack = Pack::seal(&ring, UID);
    let opener = pack.opener(&ring, "someone-else");
    for i in 0..pack.frames.len() {
        assert_decrypt_fails(pack.open(&opener, i), i);
    }
}

#[test]
fn pack_of_another_conversation_fails() {
    let ring = ring();
    let pack = Pack::seal(&ring, UID);
    let opener = ring
        .pack_opener(
            PackPlace::new(UID, "another-conversation"),
            &pack.seal_info(),
        )
        .unwrap();
    for i in 0..pack.frames.len() {
        assert_decrypt_fails(pack.open(&opener, i), i);
    }
}

#[test]
fn pack_wrong_key_id_fails() {
    let ring = ring();
    let pack = Pack::seal(&ring, UID);
    assert_eq!(pack.params().key_id, KeyId::new(1));
    // The header claims key k2 (present in the ring): other user key, and the header is AAD.
    let mut params = pack.params();
    params.key_id = KeyId::new(2);
    let place = PackPlace::new(UID, CONV);
    let opener = ring.pack_opener(place, &seal_info(params)).unwrap();
    assert_decrypt_fails(pack.open(&opener, 0), 0);
    // A key id the ring does not hold is refused before any decryption.
    params.key_id = KeyId::new(9);
    assert!(matches!(
        ring.pack_opener(place, &seal_info(params)),
        Err(CryptoError::UnknownKey { id }) if id == KeyId::new(9)
    ));
}

#[test]
fn pack_flipped_bit_in_ciphertext_fails() {
    let ring = ring();
    let mut pack = Pack::seal(&ring, UID);
    pack.frames[2][50] ^= 0x04;
    assert_decrypt_fails(pack.open(&pack.opener(&ring, UID), 2), 2);
}

#[test]
fn pack_flipped_bit_in_tag_fails() {
    let ring = ring();
    let mut pack = Pack::seal(&ring, UID);
    let len = pack.frames[0].len();
    pack.frames[0][len - 1] ^= 0x01;
    assert_decrypt_fails(pack.open(&pack.opener(&ring, UID), 0), 0);
}

#[test]
fn pack_flipped_bit_in_nonce_prefix_fails() {
    let ring = ring();
    let mut pack = Pack::seal(&ring, UID);
    let at = pack.header.len() - 1; // last byte of the nonce prefix
    pack.header[at] ^= 0x01;
    let opener = pack.opener(&ring, UID);
    assert_decrypt_fails(pack.open(&opener, 0), 0);
}

#[test]
fn pack_truncated_frame_fails() {
    let ring = ring();
    let mut pack = Pack::seal(&ring, UID);
    let opener = pack.opener(&ring, UID);
    pack.frames[1].pop();
    assert_decrypt_fails(pack.open(&opener, 1), 1);
    pack.frames[1].truncate(15);
    assert!(matches!(
        pack.open(&opener, 1),
        Err(CryptoError::FrameTooShort {
            index: 1,
            len: 15,
            min: 16
        })
    ));
}

#[test]
fn pack_under_removed_key_is_unreadable_and_rotation_reseals() {
    let mut ring = ring();
    let old = Pack::seal(&ring, UID);
    // Rotate: k2 becomes active, the pack is re-sealed frame by frame, the Omi key moves to
    // k2, k1 is dropped.
    ring.set_active(KeyId::new(2)).unwrap();
    let reader = old.opener(&ring, UID);
    let mut sealer = ring.pack_sealer(PackPlace::new(UID, CONV)).unwrap();
    assert_eq!(sealer.params().key_id, KeyId::new(2));
    let mut header = old.header[..old.header.len() - chunk_crypto::pack::SEAL_PARAMS_LEN].to_vec();
    header.extend_from_slice(&sealer.params().to_bytes());
    let mut frames = Vec::new();
    for i in 0..old.frames.len() {
        let plain = old.open(&reader, i).unwrap();
        let last = i == old.last();
        frames.push(
            sealer
                .seal(i as u32, &aad(&header, &old.entries[i]), &plain, last)
                .unwrap(),
        );
    }
    let new = Pack {
        header,
        entries: old.entries.clone(),
        frames,
    };
    drop(reader);
    // k1 is still the Omi key (rotation does not move it), so it cannot be dropped yet.
    assert!(matches!(
        ring.remove(KeyId::new(1)),
        Err(CryptoError::KeyInUse { id }) if id == KeyId::new(1)
    ));
    ring.set_omi_key(KeyId::new(2)).unwrap();
    ring.remove(KeyId::new(1)).unwrap();

    assert!(matches!(
        ring.pack_opener(PackPlace::new(UID, CONV), &old.seal_info()),
        Err(CryptoError::UnknownKey { id }) if id == KeyId::new(1)
    ));
    let opener = new.opener(&ring, UID);
    for i in 0..new.frames.len() {
        assert_eq!(
            new.open(&opener, i).unwrap(),
            old.open(
                &PackOpener::new(&root_of(b'a'), PackPlace::new(UID, CONV), &old.params()),
                i
            )
            .unwrap()
        );
    }
}

/// The pack root key under a secret of 64 × `byte`, derived without the ring.
fn root_of(byte: u8) -> PackRootKey {
    PackRootKey::derive(&secret(byte), UID)
}

#[test]
fn sealer_refuses_frames_out_of_order_and_after_last() {
    let root = root_of(b'a');
    let mut sealer = PackSealer::new(&root, PackPlace::new(UID, CONV), KeyId::new(1)).unwrap();
    sealer.seal(0, b"h", b"a", false).unwrap();
    assert!(matches!(
        sealer.seal(2, b"h", b"c", false),
        Err(CryptoError::OutOfOrder {
            expected: 1,
            got: 2
        })
    ));
    sealer.seal(1, b"h", b"b", true).unwrap();
    assert!(matches!(
        sealer.seal(2, b"h", b"c", false),
        Err(CryptoError::AfterLast { got: 2 })
    ));
    assert!(matches!(
        sealer.seal(1, b"h", b"b", true),
        Err(CryptoError::AfterLast { got: 1 })
    ));
}

#[test]
fn two_sealers_never_share_parameters() {
    let root = root_of(b'a');
    let place = PackPlace::new(UID, CONV);
    let a = PackSealer::new(&root, place, KeyId::new(1))
        .unwrap()
        .params();
    let b = PackSealer::new(&root, place, KeyId::new(1))
        .unwrap()
        .params();
    assert_ne!(a.salt, b.salt);
    assert_ne!(a.nonce_prefix, b.nonce_prefix);
}
