//! Opening Omi encrypted objects: arbitrary bytes never panic, the walk ends with at most one
//! error (last) that names the frame it stopped at (an empty object: `EmptyObject`, never zero
//! chunks); and the input, sealed as frames, opens back to exactly itself, while one flipped bit
//! anywhere in the sealed object is always caught. Opening in place agrees with the walk: the
//! same plaintexts, or an error exactly when the walk ends in one.
//!
//! Sealing uses fixed nonces: chunk-crypto's `insecure-fixed-nonces` feature (fuzz/Cargo.toml).
#![no_main]

use chunk_crypto::{CryptoError, UserKey, omi};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = UserKey::from_bytes([0x42; 32]);

    // 1. The input as a stored object.
    let mut opened = 0usize;
    let mut plain_total = 0usize;
    let mut failed = false;
    for item in omi::open_object(&key, data) {
        assert!(!failed, "item after an error");
        match item {
            Ok(plain) => {
                plain_total += plain.len();
                opened += 1;
            }
            Err(err) => {
                failed = true;
                if data.is_empty() {
                    assert!(
                        matches!(err, CryptoError::EmptyObject),
                        "empty object: {err:?}"
                    );
                    continue;
                }
                let index = match err {
                    CryptoError::Frame { index, .. }
                    | CryptoError::FrameTooShort { index, .. }
                    | CryptoError::Decrypt { index } => index,
                    other => panic!("unexpected error kind: {other:?}"),
                };
                assert_eq!(index, opened, "error names the wrong frame");
            }
        }
    }
    assert!(plain_total + opened * omi::FRAME_OVERHEAD <= data.len());
    let mut copy = data.to_vec();
    match omi::open_object_in_place(&key, &mut copy) {
        Ok(ranges) => {
            assert!(!failed, "opened in place what the walk refuses");
            let walked: Vec<Vec<u8>> = omi::open_object(&key, data).flatten().collect();
            let in_place: Vec<&[u8]> = ranges.iter().map(|r| &copy[r.clone()]).collect();
            assert_eq!(walked.len(), in_place.len());
            assert!(walked.iter().zip(&in_place).all(|(a, b)| a == b));
        }
        Err(_) => assert!(failed, "refused in place what the walk opens"),
    }
    assert!(failed || opened > 0, "an object opened as zero chunks");

    // 2. The input sealed as frames (chunk size from the first byte), opened, then tampered.
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(selector % 64) + 1;
    let mut object = Vec::new();
    let chunks: Vec<&[u8]> = rest.chunks(chunk).collect();
    for (i, plain) in chunks.iter().enumerate() {
        let nonce = [i as u8; omi::NONCE_LEN];
        omi::seal_frame_with_nonce_for_tests(&key, &nonce, plain, &mut object)
            .expect("a small frame always seals");
    }
    if chunks.is_empty() {
        // Nothing sealed: an empty object, which is refused rather than read as zero chunks.
        assert!(object.is_empty());
        assert!(matches!(
            omi::open_object(&key, &object).collect::<Result<Vec<_>, _>>(),
            Err(CryptoError::EmptyObject)
        ));
        return;
    }
    let back: Vec<Vec<u8>> = omi::open_object(&key, &object)
        .collect::<Result<_, _>>()
        .expect("a sealed object opens");
    assert_eq!(back.len(), chunks.len());
    assert!(
        back.iter().zip(&chunks).all(|(a, b)| a == b),
        "round trip changed bytes"
    );

    let at = usize::from(selector)
        .wrapping_mul(7919)
        .wrapping_add(rest.len())
        % object.len();
    object[at] ^= 1 << (selector % 8);
    assert!(
        omi::open_object(&key, &object).any(|item| item.is_err()),
        "flipped bit at byte {at} was not caught"
    );
});
