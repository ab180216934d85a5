//! Keyring files: every input gives a key ring or a one-line error, and a parsed ring writes
//! back to a file that parses to the same ring.

#![no_main]

use chunk_crypto::keyring_file::{parse_keyring, write_keyring};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_keyring(data) {
        Ok(ring) => {
            let text = write_keyring(&ring);
            let back = parse_keyring(text.as_bytes()).expect("a written keyring parses");
            assert_eq!(&*write_keyring(&back), &*text);
            assert_eq!(format!("{back:?}"), format!("{ring:?}"));
        }
        Err(error) => assert!(!error.to_string().contains('\n')),
    }
});
