//! Property tests: seal/open round-trips, single-bit tampering, and total parsing of
//! arbitrary bytes. Case counts follow `PROPTEST_CASES` (`cargo xtask proptest`).

use chunk_crypto::pack::{PackOpener, PackPlace, PackSealer, SealParams, sealed_len};
use chunk_crypto::{CryptoError, KeyId, PackRootKey, UserKey, omi};
use proptest::prelude::*;

fn plaintexts() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..600), 1..6)
}

fn seal_params() -> impl Strategy<Value = SealParams> {
    (any::<u32>(), any::<[u8; 16]>(), any::<[u8; 7]>()).prop_map(|(id, salt, nonce_prefix)| {
        SealParams {
            key_id: KeyId::new(id),
            salt,
            nonce_prefix,
        }
    })
}

proptest! {
    #[test]
    fn prop_omi_frames_round_trip(key in any::<[u8; 32]>(), chunks in plaintexts()) {
        let key = UserKey::from_bytes(key);
        let mut object = Vec::new();
        for chunk in &chunks {
            omi::seal_frame(&key, chunk, &mut object).unwrap();
        }
        let total: usize = chunks.iter().map(|c| c.len() + omi::FRAME_OVERHEAD).sum();
        prop_assert_eq!(object.len(), total);
        let opened: Vec<Vec<u8>> = omi::open_object(&key, &object).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(&opened, &chunks);
        // Each frame's length prefix is 28 + plaintext length (compat §2.2).
        let mut offset = 0;
        for chunk in &chunks {
            let declared = u32::from_be_bytes(object[offset..offset + 4].try_into().unwrap());
            prop_assert_eq!(declared as usize, chunk.len() + omi::BODY_OVERHEAD);
            offset += 4 + declared as usize;
        }
    }

    #[test]
    fn prop_omi_any_flipped_bit_is_caught(
        key in any::<[u8; 32]>(),
        chunks in plaintexts(),
        pick in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let key = UserKey::from_bytes(key);
        let mut object = Vec::new();
        for chunk in &chunks {
            omi::seal_frame(&key, chunk, &mut object).unwrap();
        }
        let at = pick.index(object.len());
        object[at] ^= 1 << bit;
        let results: Vec<_> = omi::open_object(&key, &object).collect();
        prop_assert!(
            results.iter().any(Result::is_err),
            "flipping bit {} of byte {} went unnoticed", bit, at
        );
        prop_assert!(results.last().is_some_and(Result::is_err));
    }

    #[test]
    fn prop_omi_open_is_total(key in any::<[u8; 32]>(), bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let key = UserKey::from_bytes(key);
        let results: Vec<_> = omi::open_object(&key, &bytes).collect();
        // Random bytes never authenticate; the walk ends, with at most one error, last (an
        // empty object is one error too: `EmptyObject`).
        let errors = results.iter().filter(|r| r.is_err()).count();
        prop_assert!(errors <= 1);
        prop_assert!(results.len() <= bytes.len() / 4 + 1);
        prop_assert!(results.last().is_some_and(Result::is_err));
        if bytes.is_empty() {
            prop_assert!(matches!(results[..], [Err(CryptoError::EmptyObject)]));
        }
    }

    #[test]
    fn prop_pack_round_trip_in_any_order(
        key in any::<[u8; 32]>(),
        key_id in any::<u32>().prop_map(KeyId::new),
        chunks in plaintexts(),
        header in prop::collection::vec(any::<u8>(), 0..64),
        order in any::<u64>(),
        uid in "[a-z0-9]{1,12}",
        conversation in "[a-z0-9-]{0,12}",
    ) {
        let root = PackRootKey::from_bytes(key);
        let place = PackPlace::new(&uid, &conversation);
        let mut sealer = PackSealer::new(&root, place, key_id).unwrap();
        let params = sealer.params();
        prop_assert_eq!(params.key_id, key_id);
        let last = chunks.len() - 1;
        let mut sealed = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let aad = [&header[..], &(i as u32).to_be_bytes()].concat();
            let frame = sealer.seal(i as u32, &aad, chunk, i == last).unwrap();
            prop_assert_eq!(frame.len(), sealed_len(chunk.len()));
            sealed.push(frame);
        }
        prop_assert!(sealer.is_finished());
        let opener = PackOpener::new(&root, place, &SealParams::from_bytes(&params.to_bytes()));
        // Open frames alone, in an order derived from `order` (a rotation of the indices).
        let start = (order as usize) % chunks.len();
        for k in 0..chunks.len() {
            let i = (start + k) % chunks.len();
            let aad = [&header[..], &(i as u32).to_be_bytes()].concat();
            prop_assert_eq!(&opener.open(i as u32, &aad, &sealed[i], i == last).unwrap(), &chunks[i]);
        }
    }

    #[test]
    fn prop_pack_any_flipped_bit_is_caught(
        key in any::<[u8; 32]>(),
        key_id in any::<u32>().prop_map(KeyId::new),
        chunk in prop::collection::vec(any::<u8>(), 0..300),
        aad in prop::collection::vec(any::<u8>(), 1..40),
        target in 0u8..2,
        pick in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let root = PackRootKey::from_bytes(key);
        let place = PackPlace::new("u", "c");
        let mut sealer = PackSealer::new(&root, place, key_id).unwrap();
        let params = sealer.params();
        let mut sealed = sealer.seal(0, &aad, &chunk, true).unwrap();
        let mut aad = aad;
        if target == 0 {
            let at = pick.index(sealed.len());
            sealed[at] ^= 1 << bit;
        } else {
            let at = pick.index(aad.len());
            aad[at] ^= 1 << bit;
        }
        let opener = PackOpener::new(&root, place, &params);
        let result = opener.open(0, &aad, &sealed, true);
        prop_assert!(matches!(result, Err(CryptoError::Decrypt { index: 0 })), "{:?}", result);
    }

    #[test]
    fn prop_seal_params_bytes_round_trip(params in seal_params()) {
        prop_assert_eq!(SealParams::from_bytes(&params.to_bytes()), params);
    }
}

proptest! {
    /// Any ring written as a keyring file parses back to the same ring (same canonical text,
    /// same ids, roles and secrets).
    #[test]
    fn prop_keyring_files_round_trip(
        ids in prop::collection::btree_set(any::<u32>(), 1..6),
        secrets in prop::collection::vec(prop::collection::vec(any::<u8>(), 32..80), 6),
        active in any::<prop::sample::Index>(),
        omi in any::<prop::sample::Index>(),
        retire in any::<u8>(),
    ) {
        use chunk_crypto::keyring_file::{parse_keyring, write_keyring};
        use chunk_crypto::{Keyring, MasterSecret};
        let ids: Vec<KeyId> = ids.into_iter().map(KeyId::new).collect();
        let omi = ids[omi.index(ids.len())];
        let active = ids[active.index(ids.len())];
        let mut ring = Keyring::single(omi, MasterSecret::new(secrets[0].clone()).unwrap());
        for (i, &id) in ids.iter().enumerate().filter(|&(_, &id)| id != omi) {
            ring.insert(id, MasterSecret::new(secrets[i + 1].clone()).unwrap()).unwrap();
        }
        ring.set_active(active).unwrap();
        for (i, &id) in ids.iter().enumerate() {
            if id != active && id != omi && retire & (1 << i) != 0 {
                ring.retire(id).unwrap();
            }
        }
        let text = write_keyring(&ring);
        let back = parse_keyring(text.as_bytes()).unwrap();
        prop_assert_eq!(&*write_keyring(&back), &*text);
        prop_assert_eq!(format!("{back:?}"), format!("{ring:?}"));
        for &id in &ids {
            let (a, b) = (back.user_key(id, "u").unwrap(), ring.user_key(id, "u").unwrap());
            prop_assert_eq!(a.expose_bytes(), b.expose_bytes());
        }
    }

    /// Arbitrary bytes give a ring or a one-line error, never a panic.
    #[test]
    fn prop_keyring_file_parsing_is_total(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut file = b"chunkvault-keyring 1\n".to_vec();
        file.extend_from_slice(&bytes);
        for input in [&bytes[..], &file[..]] {
            if let Err(error) = chunk_crypto::keyring_file::parse_keyring(input) {
                prop_assert!(!error.to_string().contains('\n'));
            }
        }
    }
}
