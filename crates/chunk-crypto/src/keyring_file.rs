//! Keyring files: a [`Keyring`] as a small, strictly parsed text file.
//!
//! ```text
//! chunkvault-keyring 1
//! active k2
//! omi k1
//! retired k3
//! key k1 6f6d695f…
//! key k2 9c1e…
//! key k3 51d0…
//! ```
//!
//! - The first line is exactly `chunkvault-keyring 1` (the format version).
//! - Then, in any order, one line per fact, fields separated by one space:
//!   - `key <id> <secret>`: a master secret, as lowercase hex of its bytes (at least
//!     [`MIN_SECRET_LEN`] bytes; Omi's `ENCRYPTION_SECRET` is its UTF-8 bytes in hex);
//!   - `active <id>`: the id new packs are sealed under (exactly once);
//!   - `omi <id>`: the id holding Omi's secret, for Omi frames (exactly once);
//!   - `retired <id>`: an id that opens packs only to re-seal them (any number).
//! - Empty lines and lines starting with `#` are ignored. Lines end in `\n` (a `\r` before it
//!   is an error, as is any other byte out of place).
//! - Every id named by `active`, `omi` or `retired` must have a `key` line; ids are unique; the
//!   active and the Omi id cannot be retired. The file is at most [`MAX_KEYRING_FILE`] bytes.
//!
//! Errors name the line and what was wrong, never its content: a secret cannot reach an error
//! message or a log through a typo. [`write_keyring`] writes the canonical form (header,
//! `active`, `omi`, `retired` lines, then `key` lines in id order) into a buffer wiped on drop.
//!
//! ```
//! use chunk_crypto::{KeyId, Keyring, MasterSecret, keyring_file};
//!
//! let mut ring = Keyring::single(KeyId::new(1), MasterSecret::new(vec![7; 32])?);
//! let k2 = keyring_file::add_random_key(&mut ring)?;
//! ring.set_active(k2)?;
//! let text = keyring_file::write_keyring(&ring);
//! let back = keyring_file::parse_keyring(text.as_bytes())?;
//! assert_eq!((back.active_id(), back.omi_key_id()), (k2, KeyId::new(1)));
//! assert!(keyring_file::parse_keyring(b"chunkvault-keyring 1\nkey k1 zz\n").is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use zeroize::Zeroizing;

use crate::error::CryptoError;
use crate::keyring::{KeyId, Keyring};
use crate::keys::{MIN_SECRET_LEN, MasterSecret};

/// The first line of every keyring file (format version 1).
pub const KEYRING_HEADER: &str = "chunkvault-keyring 1";

/// The largest keyring file accepted, in bytes (about 500 keys of 1 KiB).
pub const MAX_KEYRING_FILE: usize = 1 << 20;

/// Length in bytes of the secrets [`add_random_key`] makes.
pub const GENERATED_SECRET_LEN: usize = 32;

/// Why a keyring file was refused. Prints as one line and never shows file content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyringFileError {
    /// The file is larger than [`MAX_KEYRING_FILE`].
    #[error("the keyring file has {len} bytes, more than the {max} allowed")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A line is malformed.
    #[error("keyring file line {line}: {reason}")]
    Line {
        /// 1-based line number.
        line: usize,
        /// What was wrong (never the line's content).
        reason: &'static str,
    },
    /// The file as a whole is inconsistent (a missing or repeated fact, an unknown id).
    #[error("keyring file: {reason}")]
    Invalid {
        /// What was wrong.
        reason: String,
    },
}

/// Parses a keyring file (format in the module doc) into a [`Keyring`].
pub fn parse_keyring(bytes: &[u8]) -> Result<Keyring, KeyringFileError> {
    if bytes.len() > MAX_KEYRING_FILE {
        return Err(KeyringFileError::TooLarge {
            len: bytes.len(),
            max: MAX_KEYRING_FILE,
        });
    }
    let mut secrets: BTreeMap<KeyId, MasterSecret> = BTreeMap::new();
    let mut active = None;
    let mut omi = None;
    let mut retired = BTreeSet::new();
    let mut lines = bytes.split(|&b| b == b'\n').enumerate();
    match lines.next() {
        Some((_, first)) if first == KEYRING_HEADER.as_bytes() => {}
        _ => {
            return Err(KeyringFileError::Line {
                line: 1,
                reason: "the first line must be exactly `chunkvault-keyring 1`",
            });
        }
    }
    for (index, raw) in lines {
        let line = index + 1;
        let bad = |reason| KeyringFileError::Line { line, reason };
        if raw.is_empty() || raw.starts_with(b"#") {
            continue;
        }
        let text = std::str::from_utf8(raw).map_err(|_| bad("not UTF-8"))?;
        let mut fields = text.split(' ');
        let (Some(kind), Some(id)) = (fields.next(), fields.next()) else {
            return Err(bad("expected `<field> <key id> …`"));
        };
        let id: KeyId = id
            .parse()
            .map_err(|_| bad("invalid key id: expected `k` followed by a number"))?;
        let secret = fields.next();
        if fields.next().is_some() {
            return Err(bad("too many fields"));
        }
        let once = |slot: &mut Option<KeyId>, what| {
            if slot.replace(id).is_some() {
                Err(bad(what))
            } else {
                Ok(())
            }
        };
        match (kind, secret) {
            ("key", Some(hex)) => {
                let secret = decode_secret(hex).map_err(bad)?;
                if secrets.insert(id, secret).is_some() {
                    return Err(bad("a second `key` line for this id"));
                }
            }
            ("key", None) => return Err(bad("a `key` line needs `key <id> <hex secret>`")),
            ("active", None) => once(&mut active, "a second `active` line")?,
            ("omi", None) => once(&mut omi, "a second `omi` line")?,
            ("retired", None) => {
                if !retired.insert(id) {
                    return Err(bad("this id is retired twice"));
                }
            }
            ("active" | "omi" | "retired", Some(_)) => return Err(bad("too many fields")),
            _ => return Err(bad("unknown field: expected key, active, omi or retired")),
        }
    }
    let invalid = |reason: String| KeyringFileError::Invalid { reason };
    let active = active.ok_or_else(|| invalid("no `active` line".to_owned()))?;
    let omi = omi.ok_or_else(|| invalid("no `omi` line".to_owned()))?;
    for (what, id) in [("active", active), ("omi", omi)]
        .into_iter()
        .chain(retired.iter().map(|&id| ("retired", id)))
    {
        if !secrets.contains_key(&id) {
            return Err(invalid(format!("the {what} id {id} has no `key` line")));
        }
    }
    let omi_secret = secrets
        .remove(&omi)
        .ok_or_else(|| invalid(format!("the omi id {omi} has no `key` line")))?;
    let mut ring = Keyring::single(omi, omi_secret);
    let ring_error = |e: CryptoError| invalid(e.to_string());
    for (id, secret) in secrets {
        ring.insert(id, secret).map_err(ring_error)?;
    }
    ring.set_active(active).map_err(ring_error)?;
    for id in retired {
        ring.retire(id).map_err(ring_error)?;
    }
    Ok(ring)
}

/// Writes `ring` as a keyring file in canonical form, into a buffer wiped on drop. Parsing
/// the result gives back the same ids, secrets, active, Omi and retired ids.
pub fn write_keyring(ring: &Keyring) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::new());
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{KEYRING_HEADER}");
    let _ = writeln!(out, "active {}", ring.active_id());
    let _ = writeln!(out, "omi {}", ring.omi_key_id());
    for id in ring.ids().filter(|&id| ring.is_retired(id)) {
        let _ = writeln!(out, "retired {id}");
    }
    for (id, secret) in ring.secrets() {
        let _ = write!(out, "key {id} ");
        let mut digits = Zeroizing::new(vec![0u8; secret.expose().len() * 2]);
        // The buffer is exactly twice the secret, which is all `encode_to_slice` needs.
        if hex::encode_to_slice(secret.expose(), &mut digits).is_ok() {
            out.push_str(std::str::from_utf8(&digits).unwrap_or_default());
        }
        out.push('\n');
    }
    out
}

/// A new ring with one fresh random secret under `k1`, active and the Omi key id.
pub fn generate_keyring() -> Result<Keyring, CryptoError> {
    let mut bytes = Zeroizing::new(vec![0u8; GENERATED_SECRET_LEN]);
    getrandom::fill(&mut bytes).map_err(CryptoError::Rng)?;
    Ok(Keyring::single(
        KeyId::new(1),
        MasterSecret::new(bytes.to_vec())?,
    ))
}

/// Adds a fresh random secret ([`GENERATED_SECRET_LEN`] bytes from the OS RNG) under the next
/// unused id (one above the highest) and returns that id; the active id does not change.
pub fn add_random_key(ring: &mut Keyring) -> Result<KeyId, CryptoError> {
    let next = ring
        .ids()
        .map(KeyId::get)
        .max()
        .and_then(|n| n.checked_add(1))
        .ok_or(CryptoError::KeyIdsExhausted)?;
    let mut bytes = Zeroizing::new(vec![0u8; GENERATED_SECRET_LEN]);
    getrandom::fill(&mut bytes).map_err(CryptoError::Rng)?;
    let id = KeyId::new(next);
    ring.insert(id, MasterSecret::new(bytes.to_vec())?)?;
    Ok(id)
}

/// Decodes a `key` line's lowercase hex secret; the reason names no byte of it.
fn decode_secret(text: &str) -> Result<MasterSecret, &'static str> {
    if !text.len().is_multiple_of(2) {
        return Err("the secret's hex has an odd number of digits");
    }
    if text.len() / 2 < MIN_SECRET_LEN {
        return Err("the secret is shorter than 32 bytes");
    }
    if !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("the secret is not lowercase hex");
    }
    let mut bytes = Zeroizing::new(vec![0u8; text.len() / 2]);
    hex::decode_to_slice(text, &mut bytes).map_err(|_| "the secret is not lowercase hex")?;
    MasterSecret::new(bytes.to_vec()).map_err(|_| "the secret is shorter than 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    const S1: &str = "6f6d695f30303030303030303030303030303030303030303030303030303030";

    fn file(lines: &[&str]) -> Vec<u8> {
        let mut text = format!("{KEYRING_HEADER}\n");
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        text.into_bytes()
    }

    #[test]
    fn a_minimal_file_parses() {
        let ring = parse_keyring(&file(&["active k1", "omi k1", &format!("key k1 {S1}")])).unwrap();
        assert_eq!(ring.active_id(), KeyId::new(1));
        assert_eq!(ring.omi_key_id(), KeyId::new(1));
        // The secret is the hex's bytes: "omi_" followed by 28 zeros.
        let expected = Keyring::single(
            KeyId::new(1),
            MasterSecret::new(format!("omi_{}", "0".repeat(28)).into_bytes()).unwrap(),
        );
        assert_eq!(
            ring.user_key(KeyId::new(1), "u").unwrap().expose_bytes(),
            expected
                .user_key(KeyId::new(1), "u")
                .unwrap()
                .expose_bytes()
        );
    }

    #[test]
    fn errors_name_the_line_and_never_the_secret() {
        let secret_like = "deadbeef".repeat(8);
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"chunkvault-keyring 2\n".to_vec(), "line 1"),
            (
                file(&[
                    "active k1",
                    "omi k1",
                    &format!("key k1 {}", secret_like.to_uppercase()),
                ]),
                "line 4: the secret is not lowercase hex",
            ),
            (
                file(&[
                    "active k1",
                    "omi k1",
                    &format!("key k1 {}", &secret_like[1..]),
                ]),
                "line 4: the secret's hex has an odd",
            ),
            (
                file(&["active k1", "omi k1", "key k1 abcd"]),
                "line 4: the secret is shorter",
            ),
            (
                file(&["active k1", "active k1", &format!("key k1 {secret_like}")]),
                "line 3: a second `active`",
            ),
            (
                file(&[
                    "active k1",
                    "omi k1",
                    &format!("key k1 {secret_like}"),
                    &format!("key k1 {secret_like}"),
                ]),
                "line 5: a second `key`",
            ),
            (file(&["active k1 extra"]), "line 2: too many fields"),
            (file(&["active 1"]), "line 2: invalid key id"),
            (file(&["colour k1"]), "line 2: unknown field"),
            (file(&["active k1\r"]), "line 2: invalid key id"),
            (
                file(&["omi k1", &format!("key k1 {secret_like}")]),
                "no `active` line",
            ),
            (
                file(&["active k2", "omi k1", &format!("key k1 {secret_like}")]),
                "the active id k2 has no `key` line",
            ),
            (
                file(&[
                    "active k1",
                    "omi k1",
                    "retired k1",
                    &format!("key k1 {secret_like}"),
                ]),
                "k1",
            ),
        ];
        for (bytes, want) in cases {
            let error = parse_keyring(&bytes).unwrap_err().to_string();
            assert!(error.contains(want), "{error:?} lacks {want:?}");
            assert!(
                !error.contains("deadbeef") && !error.contains("DEADBEEF"),
                "{error}"
            );
            assert!(!error.contains('\n'), "{error}");
        }
        let big = vec![b'#'; MAX_KEYRING_FILE + 1];
        assert!(matches!(
            parse_keyring(&big),
            Err(KeyringFileError::TooLarge { .. })
        ));
    }

    #[test]
    fn written_files_parse_back_to_the_same_ring() {
        let fresh = generate_keyring().unwrap();
        assert_eq!(
            (fresh.active_id(), fresh.omi_key_id()),
            (KeyId::new(1), KeyId::new(1))
        );
        let mut ring = Keyring::single(KeyId::new(4), MasterSecret::new(vec![9; 40]).unwrap());
        let k5 = add_random_key(&mut ring).unwrap();
        let k6 = add_random_key(&mut ring).unwrap();
        assert_eq!((k5, k6), (KeyId::new(5), KeyId::new(6)));
        ring.set_active(k6).unwrap();
        ring.retire(k5).unwrap();
        let text = write_keyring(&ring);
        let back = parse_keyring(text.as_bytes()).unwrap();
        assert_eq!(write_keyring(&back), text);
        assert_eq!(format!("{back:?}"), format!("{ring:?}"));
        for id in [KeyId::new(4), k5, k6] {
            assert_eq!(
                back.user_key(id, "u").unwrap().expose_bytes(),
                ring.user_key(id, "u").unwrap().expose_bytes()
            );
        }
        assert!(
            text.starts_with("chunkvault-keyring 1\nactive k6\nomi k4\nretired k5\nkey k4 0909")
        );
    }
}
