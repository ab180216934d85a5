//! Sealed packs with the real STREAM sealing (chunk-crypto's AES-256-GCM): round trips and the
//! container-level tamper tests of design.md §3.3 — reordering, truncation, splicing between
//! objects, header tampering and any flipped byte must fail, never give wrong audio.

use chunk_crypto::pack::{PackOpener, PackPlace, PackSealer, SealParams};
use chunk_crypto::{KeyId, PackRootKey};
use chunk_format::Timestamp;
use chunk_format::pack::{
    Codec, PackConfig, PackEncoder, PackError, PackIndex, PackPart, PackTail, SegmentOpener,
    SegmentSealer,
};
use proptest::prelude::*;

/// The place of every pack here (the key binds it; other places are tests/it/hostile_objects.rs
/// and chunk-crypto's tamper tests).
const PLACE: PackPlace<'static> = PackPlace::new("u", "c");

/// The pack root key of "user" `byte`.
fn user(byte: u8) -> PackRootKey {
    PackRootKey::from_bytes([byte; 32])
}

fn pcm(len: usize, seed: u32) -> Vec<u8> {
    (0..len / 2)
        .flat_map(|i| {
            let s = ((i as f32 * 0.07 + seed as f32).sin() * 5000.0) as i16;
            s.to_le_bytes()
        })
        .collect()
}

fn seal(codec: Codec, key: &PackRootKey, chunks: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let sealer = PackSealer::new(key, PLACE, KeyId::new(1)).expect("rng");
    let mut enc = PackEncoder::new(
        PackConfig::new(codec, 16_000, 1),
        Some(Box::new(sealer) as Box<dyn SegmentSealer>),
    )
    .expect("config");
    let mut object = Vec::new();
    for (start, pcm) in chunks {
        let start = Timestamp::from_millis(*start).expect("ts");
        object.extend(enc.push_chunk(start, pcm).expect("push"));
    }
    object.extend(enc.finish().expect("finish"));
    object
}

/// The opener a reader builds: seal parameters from the tail's header copy.
fn opener_for(object: &[u8], key: &PackRootKey) -> PackOpener {
    let tail = PackTail::new(object, object.len() as u64).expect("trailer");
    let seal = *tail.header().seal().expect("sealed pack");
    PackOpener::new(key, PLACE, &SealParams::from(seal))
}

fn decode_all(object: &[u8], opener: &PackOpener) -> Result<Vec<(u64, Vec<u8>)>, PackError> {
    let index = PackIndex::from_object(object, Some(opener))?;
    (0..index.len())
        .map(|i| {
            let frame = index.frame_bytes(i, object)?;
            let pcm = index.decode_frame(i, frame, Some(opener))?;
            Ok((index.entries()[i].start.as_millis(), pcm))
        })
        .collect()
}

fn chunks() -> Vec<(u64, Vec<u8>)> {
    vec![
        (1_786_961_845_727, pcm(320, 1)),
        (1_786_961_845_800, pcm(64, 2)),
        (1_786_961_846_000, pcm(160, 3)),
    ]
}

const CODECS: [Codec; 2] = [Codec::Pcm16Le, Codec::ZstdPcm16Le];

#[test]
fn sealed_packs_round_trip_and_hide_the_pcm() {
    for codec in CODECS {
        let key = user(7);
        let object = seal(codec, &key, &chunks());
        assert_eq!(
            decode_all(&object, &opener_for(&object, &key)).unwrap(),
            chunks()
        );
        // No chunk's PCM appears in the object, and no plaintext checksum is recorded.
        for (_, pcm) in chunks() {
            assert!(!object.windows(32).any(|w| w == &pcm[..32]));
        }
        let index = PackIndex::from_object(&object, Some(&opener_for(&object, &key))).unwrap();
        assert!(index.entries().iter().all(|e| e.crc32c == 0));
        assert_eq!(index.header().key_id(), Some(1));
    }
}

#[test]
fn another_user_opens_nothing() {
    let object = seal(Codec::ZstdPcm16Le, &user(7), &chunks());
    let wrong = opener_for(&object, &user(8));
    assert!(matches!(
        PackIndex::from_object(&object, Some(&wrong)),
        Err(PackError::Open {
            part: PackPart::Index,
            ..
        })
    ));
}

/// Flips each bit 0 and 7 of every byte: the pack fails to open, or some frame fails; no frame
/// ever decodes to anything but its original PCM, at its original start.
#[test]
fn flipping_any_byte_of_a_sealed_pack_never_yields_wrong_audio() {
    for codec in CODECS {
        let key = user(9);
        let object = seal(codec, &key, &chunks());
        let opener = opener_for(&object, &key);
        let original = chunks();
        for pos in 0..object.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = object.clone();
                bad[pos] ^= bit;
                let Ok(index) = PackIndex::from_object(&bad, Some(&opener)) else {
                    continue;
                };
                let mut failed = 0;
                for (i, (start, pcm)) in original.iter().enumerate() {
                    let frame = index.frame_bytes(i, &bad).unwrap();
                    match index.decode_frame(i, frame, Some(&opener)) {
                        Ok(got) => {
                            assert_eq!(&got, pcm, "{codec}: wrong audio after flip at {pos}");
                            assert_eq!(index.entries()[i].start.as_millis(), *start);
                        }
                        Err(_) => failed += 1,
                    }
                }
                assert!(failed > 0, "{codec}: flip at byte {pos} went unnoticed");
            }
        }
    }
}

#[test]
fn tail_readers_authenticate_the_header_copy() {
    // A ranged reader never sees the leading header; the trailer's copy is what it uses, and
    // changing it (here: the sample rate, with its CRC and the trailer CRC repaired) fails.
    let key = user(3);
    let object = seal(Codec::Pcm16Le, &key, &chunks());
    let opener = opener_for(&object, &key);
    let mut bad = object.clone();
    let t = bad.len() - 72;
    bad[t + 8..t + 12].copy_from_slice(&8_000u32.to_le_bytes());
    let crc = crc32c(&bad[t..t + 44]);
    bad[t + 44..t + 48].copy_from_slice(&crc.to_le_bytes());
    let crc = crc32c(&bad[t..t + 64]);
    bad[t + 64..t + 68].copy_from_slice(&crc.to_le_bytes());
    let tail = PackTail::new(&bad, bad.len() as u64).expect("trailer still parses");
    assert_eq!(tail.header().sample_rate(), 8_000);
    assert!(matches!(
        tail.index(Some(&opener)),
        Err(PackError::Open {
            part: PackPart::Index,
            ..
        })
    ));
}

/// CRC-32C, bitwise (only to repair checksums in tamper tests).
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn reordered_frames_fail() {
    // Two chunks of equal length, swapped in place (index untouched).
    let key = user(4);
    let chunks = vec![(0, pcm(100, 1)), (100, pcm(100, 2))];
    let object = seal(Codec::Pcm16Le, &key, &chunks);
    let opener = opener_for(&object, &key);
    let index = PackIndex::from_object(&object, Some(&opener)).unwrap();
    let (a, b) = (index.frame_range(0).unwrap(), index.frame_range(1).unwrap());
    let (a, b) = (
        a.start as usize..a.end as usize,
        b.start as usize..b.end as usize,
    );
    let mut swapped = object.clone();
    swapped[a.clone()].copy_from_slice(&object[b.clone()]);
    swapped[b].copy_from_slice(&object[a]);
    let index = PackIndex::from_object(&swapped, Some(&opener)).unwrap();
    for i in 0..2 {
        let frame = index.frame_bytes(i, &swapped).unwrap();
        assert!(matches!(
            index.decode_frame(i, frame, Some(&opener)),
            Err(PackError::Open {
                part: PackPart::Frame { .. },
                ..
            })
        ));
    }
}

#[test]
fn truncated_sealed_packs_fail() {
    let key = user(5);
    let object = seal(Codec::ZstdPcm16Le, &key, &chunks());
    let opener = opener_for(&object, &key);
    for cut in 0..object.len() {
        assert!(decode_all(&object[..cut], &opener).is_err(), "cut at {cut}");
    }
    // Dropping the last frame and rebuilding the (unauthenticated) trailer around the intact
    // sealed index: with the old count the index opens but no longer tiles the object; with
    // count 2 the index is the wrong length, and a 2-entry index would have to be sealed as
    // segment 2, which only the key holder can do.
    let index = PackIndex::from_object(&object, Some(&opener)).unwrap();
    let last = index.frame_range(2).unwrap();
    let r = index.index_range();
    let index_bytes = &object[r.start as usize..r.end as usize];
    for count in [3u32, 2] {
        let mut shorter = object[..last.start as usize].to_vec();
        let index_offset = shorter.len() as u64;
        shorter.extend_from_slice(index_bytes);
        let mut trailer = object[object.len() - 72..object.len() - 24].to_vec();
        trailer.extend_from_slice(&index_offset.to_le_bytes());
        trailer.extend_from_slice(&(index_bytes.len() as u32).to_le_bytes());
        trailer.extend_from_slice(&count.to_le_bytes());
        let crc = crc32c(&trailer);
        trailer.extend_from_slice(&crc.to_le_bytes());
        trailer.extend_from_slice(b"CVPK");
        shorter.extend_from_slice(&trailer);
        let err = decode_all(&shorter, &opener).unwrap_err();
        assert!(
            matches!(
                err,
                PackError::BadEntry { .. } | PackError::BadLocator { .. }
            ),
            "count {count}: {err}"
        );
    }
}

#[test]
fn frames_spliced_from_another_pack_fail() {
    // Same user, same chunk lengths and timing: only the per-object salt differs.
    let key = user(6);
    let a = seal(Codec::Pcm16Le, &key, &chunks());
    let b = seal(Codec::Pcm16Le, &key, &chunks());
    let (opener_a, opener_b) = (opener_for(&a, &key), opener_for(&b, &key));
    let index_a = PackIndex::from_object(&a, Some(&opener_a)).unwrap();
    let index_b = PackIndex::from_object(&b, Some(&opener_b)).unwrap();
    assert_eq!(index_a.entries(), index_b.entries());
    for i in 0..index_a.len() {
        let frame_b = index_b.frame_bytes(i, &b).unwrap();
        assert!(index_a.decode_frame(i, frame_b, Some(&opener_a)).is_err());
    }
    // B's index under A's header (copied into A's object) fails too.
    let mut spliced = a.clone();
    let r = index_a.index_range();
    spliced[r.start as usize..r.end as usize].copy_from_slice(&b[r.start as usize..r.end as usize]);
    assert!(PackIndex::from_object(&spliced, Some(&opener_a)).is_err());
}

#[test]
fn header_tampering_fails_even_with_repaired_checksums() {
    let key = user(2);
    let object = seal(Codec::ZstdPcm16Le, &key, &chunks());
    // Change the key id in both header copies and repair every CRC: the reader then derives
    // another key (or finds no such key); with the original opener, the header no longer
    // matches the associated data.
    let opener = opener_for(&object, &key);
    let mut bad = object.clone();
    let trailer = bad.len() - 72;
    for at in [0, trailer] {
        bad[at + 16] ^= 1;
        let crc = crc32c(&bad[at..at + 44]);
        bad[at + 44..at + 48].copy_from_slice(&crc.to_le_bytes());
    }
    let crc = crc32c(&bad[trailer..trailer + 64]);
    bad[trailer + 64..trailer + 68].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        PackTail::new(&bad, bad.len() as u64)
            .unwrap()
            .header()
            .key_id(),
        Some(0)
    );
    assert!(matches!(
        PackIndex::from_object(&bad, Some(&opener)),
        Err(PackError::Open {
            part: PackPart::Index,
            ..
        })
    ));
}

#[test]
fn the_conversation_id_is_not_bound() {
    // A pack copied byte for byte to another conversation (a server-side copy) still opens: the
    // only inputs are the user key and the pack's own bytes.
    let key = user(1);
    let object = seal(Codec::ZstdPcm16Le, &key, &chunks());
    let copied = object.clone();
    assert_eq!(
        decode_all(&copied, &opener_for(&copied, &key)).unwrap(),
        chunks()
    );
}

proptest! {
    #[test]
    fn prop_sealed_packs_round_trip(
        specs in prop::collection::vec((0u64..2_000, 1usize..400, any::<u32>()), 1..6),
        zstd in any::<bool>(),
    ) {
        let mut start = 1_786_961_845_727;
        let chunks: Vec<(u64, Vec<u8>)> = specs
            .into_iter()
            .map(|(gap, samples, seed)| {
                let chunk = (start, pcm(samples * 2, seed));
                start += (samples as u64 * 1000).div_ceil(16_000) + gap;
                chunk
            })
            .collect();
        let codec = if zstd { Codec::ZstdPcm16Le } else { Codec::Pcm16Le };
        let key = user(11);
        let object = seal(codec, &key, &chunks);
        let opener = opener_for(&object, &key);
        prop_assert_eq!(decode_all(&object, &opener).unwrap(), chunks);
        // The tail path agrees.
        let index = PackIndex::from_object(&object, Some(&opener)).unwrap();
        let tail = &object[index.index_range().start as usize..];
        let from_tail = PackTail::parse(tail, object.len() as u64, Some(&opener as &dyn SegmentOpener)).unwrap();
        prop_assert_eq!(from_tail, index);
    }
}
