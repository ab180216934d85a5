//! `chunk-crypto` against the objects Omi's own code encrypted (tests/fixtures/omi/vectors):
//! the key derivation reproduces the manifest's keys, every `.enc`, `.batch.enc`, `.opus.enc`
//! and `audio/.../*.enc` object opens frame by frame to the plaintext digests
//! `expected/objects.json` records, the deliberately truncated `.enc` of scenario E fails with a
//! typed error naming frame 0, and objects re-sealed by chunkvault have Omi's exact structure.

use chunk_crypto::{CryptoError, KeyId, Keyring, MasterSecret, UserKey, omi};
use chunk_format::frames::FrameError;
use chunkvault_tests::omi::{Frame, ObjectEntry, OmiDecryptResult, Scenario, load_manifest};
use chunkvault_tests::sha256_hex;

fn keyring() -> (Keyring, String) {
    let manifest = load_manifest().expect("manifest.json");
    let secret = MasterSecret::new(manifest.encryption_secret.clone().into_bytes())
        .expect("the vectors' secret is 64 bytes");
    (Keyring::single(KeyId::new(1), secret), manifest.uid)
}

/// Every object of every scenario whose analysis lists frames (the encrypted ones).
fn encrypted_objects() -> Vec<(Scenario, ObjectEntry)> {
    let mut found = Vec::new();
    for scenario in Scenario::load_all().expect("scenarios load") {
        for entry in scenario.objects.clone() {
            if entry.frames.is_some() {
                found.push((scenario.clone(), entry));
            }
        }
    }
    found
}

#[test]
fn derived_keys_match_the_manifest() {
    let manifest = load_manifest().unwrap();
    let (ring, uid) = keyring();
    assert_eq!(
        hex::encode(ring.omi_key(&uid).unwrap().expose_bytes()),
        manifest.key_for_uid_hex
    );
    assert_eq!(
        hex::encode(ring.omi_key("test-uid").unwrap().expose_bytes()),
        manifest.spec_test_vector_key_for_test_uid
    );
}

#[test]
fn every_encrypted_object_in_the_buckets_is_analysed() {
    // The test below walks objects.json; make sure that covers every `.enc` file on disk.
    for scenario in Scenario::load_all().unwrap() {
        let on_disk: Vec<String> = scenario
            .bucket_object_names()
            .unwrap()
            .into_iter()
            .filter(|name| name.ends_with(".enc"))
            .collect();
        let analysed: Vec<String> = scenario
            .objects
            .iter()
            .filter(|entry| entry.frames.is_some())
            .map(|entry| entry.name.clone())
            .collect();
        let mut analysed_sorted = analysed.clone();
        analysed_sorted.sort();
        assert_eq!(on_disk, analysed_sorted, "scenario {}", scenario.name);
    }
}

#[test]
fn every_encrypted_vector_object_opens_to_the_recorded_plaintext() {
    let (ring, uid) = keyring();
    let key = ring.omi_key(&uid).unwrap();
    let objects = encrypted_objects();
    assert!(!objects.is_empty(), "no encrypted objects in the vectors");
    let mut frames_opened = 0;
    let mut failures_seen = 0;
    for (scenario, entry) in &objects {
        let what = format!("scenario {} object {}", scenario.name, entry.name);
        let bytes = scenario.object_bytes(&entry.name).unwrap();
        assert_eq!(
            sha256_hex(&bytes),
            entry.sha256,
            "{what}: fixture bytes changed"
        );
        let expected = entry.frames.as_ref().unwrap();
        let results: Vec<_> = omi::open_object(&key, &bytes).collect();
        assert_eq!(results.len(), expected.len(), "{what}: frame count");

        let mut plaintext = Vec::new();
        for (index, (result, frame)) in results.iter().zip(expected).enumerate() {
            match (result, frame) {
                (
                    Ok(plain),
                    Frame::Decrypted {
                        length_field,
                        plaintext_len,
                        plaintext_sha256,
                        ..
                    },
                ) => {
                    assert_eq!(plain.len() as u64, *plaintext_len, "{what} frame {index}");
                    assert_eq!(
                        *length_field,
                        plain.len() as u64 + 28,
                        "{what} frame {index}"
                    );
                    assert_eq!(&sha256_hex(plain), plaintext_sha256, "{what} frame {index}");
                    plaintext.extend_from_slice(plain);
                    frames_opened += 1;
                }
                (Err(err), Frame::Failed { .. }) => {
                    assert!(
                        err.to_string().contains(&format!("frame {index}")),
                        "{what}: error does not name frame {index}: {err}"
                    );
                    failures_seen += 1;
                }
                (got, want) => panic!("{what} frame {index}: got {got:?}, expected {want:?}"),
            }
        }
        match &entry.omi_decrypt_audio_file {
            Some(OmiDecryptResult::Ok { len, sha256 }) => {
                assert_eq!(plaintext.len() as u64, *len, "{what}");
                assert_eq!(&sha256_hex(&plaintext), sha256, "{what}");
                assert_eq!(entry.plaintext_sha256.as_ref(), Some(sha256), "{what}");
            }
            Some(OmiDecryptResult::Err { .. }) => {
                assert!(
                    results.iter().any(Result::is_err),
                    "{what}: Omi failed, we did not"
                );
            }
            None => panic!("{what}: no omi_decrypt_audio_file analysis"),
        }
    }
    // Scenario E's truncated `.enc` is the one object Omi could not decrypt.
    assert_eq!(failures_seen, 1);
    assert!(frames_opened >= objects.len());
}

#[test]
fn truncated_enc_of_scenario_e_names_frame_0() {
    let (ring, uid) = keyring();
    let scenario = Scenario::load("E").unwrap();
    let name = "chunks/oracle-uid/conv-e/1786961935.727.enc";
    let bytes = scenario.object_bytes(name).unwrap();
    let mut results = omi::open_object(&ring.omi_key(&uid).unwrap(), &bytes);
    match results.next() {
        Some(Err(CryptoError::Frame {
            index: 0,
            source:
                FrameError::LengthPastEnd {
                    offset: 0,
                    declared: 160_028,
                    available,
                    ..
                },
        })) => assert_eq!(available, bytes.len() - 4),
        other => panic!("expected a framing error at frame 0, got {other:?}"),
    }
    assert!(results.next().is_none(), "nothing after the error");
}

#[test]
fn speaker_embeddings_object_opens() {
    let (ring, uid) = keyring();
    let scenario = Scenario::load("E").unwrap();
    let name = "audio/oracle-uid/conv-e/speaker-embeddings.v1.enc";
    let entry = scenario.objects.iter().find(|e| e.name == name).unwrap();
    let bytes = scenario.object_bytes(name).unwrap();
    let plain: Vec<Vec<u8>> = omi::open_object(&ring.omi_key(&uid).unwrap(), &bytes)
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(plain.len(), 1);
    assert_eq!(Some(sha256_hex(&plain[0])), entry.plaintext_sha256);
}

#[test]
fn resealed_objects_have_omis_structure() {
    // Writers use random nonces, so compare structure (compat README "Writers"): size, frame
    // count, each length field, and each frame's plaintext digest after opening.
    let (ring, uid) = keyring();
    let key = ring.omi_key(&uid).unwrap();
    for (scenario, entry) in encrypted_objects() {
        let bytes = scenario.object_bytes(&entry.name).unwrap();
        let Ok(plain) = omi::open_object(&key, &bytes).collect::<Result<Vec<_>, _>>() else {
            continue; // the truncated object has no plaintext to re-seal
        };
        let mut ours = Vec::new();
        for chunk in &plain {
            omi::seal_frame(&key, chunk, &mut ours).unwrap();
        }
        let what = format!("scenario {} object {}", scenario.name, entry.name);
        assert_eq!(ours.len() as u64, entry.size, "{what}");
        assert_ne!(ours, bytes, "{what}: nonces must be fresh");
        let mut offset = 0usize;
        for frame in entry.frames.as_ref().unwrap() {
            assert_eq!(offset as u64, frame.offset(), "{what}");
            let prefix: [u8; 4] = ours[offset..offset + 4].try_into().unwrap();
            assert_eq!(
                u64::from(u32::from_be_bytes(prefix)),
                frame.length_field(),
                "{what}"
            );
            offset += 4 + frame.length_field() as usize;
        }
        let reopened: Vec<Vec<u8>> = omi::open_object(&key, &ours)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(reopened, plain, "{what}");
    }
}

#[test]
fn vector_objects_do_not_open_under_another_user_or_secret() {
    let (ring, uid) = keyring();
    let other_secret = MasterSecret::new(format!("omi_{}", "1".repeat(60)).into_bytes()).unwrap();
    let wrong_keys = [
        ("other uid", ring.omi_key("other-uid").unwrap()),
        ("other secret", UserKey::derive(&other_secret, &uid)),
    ];
    for (scenario, entry) in encrypted_objects() {
        let bytes = scenario.object_bytes(&entry.name).unwrap();
        for (label, key) in &wrong_keys {
            let first = omi::open_object(key, &bytes).next();
            assert!(
                matches!(
                    first,
                    Some(Err(
                        CryptoError::Decrypt { index: 0 } | CryptoError::Frame { index: 0, .. }
                    ))
                ),
                "{label}: {} opened: {first:?}",
                entry.name
            );
        }
    }
}
