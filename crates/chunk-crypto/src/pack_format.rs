//! The pack container's sealing hooks, implemented by this crate's STREAM sealer and opener.
//!
//! `chunk-format` writes and reads packs without knowing any cryptography: it asks a
//! [`SegmentSealer`] to seal each frame (counter `i`, not last) and the index (counter `n`,
//! last), and a [`SegmentOpener`] to open them. [`PackSealer`] and [`PackOpener`] are those, and
//! [`SealParams`] converts to and from the header's [`SealInfo`].
//!
//! ```
//! use chunk_crypto::pack::{PackOpener, PackPlace, PackSealer, SealParams};
//! use chunk_crypto::{KeyId, PackRootKey};
//! use chunk_format::Timestamp;
//! use chunk_format::pack::{PackConfig, PackEncoder, PackTail};
//!
//! let root = PackRootKey::from_bytes([1; 32]);
//! let place = PackPlace::new("alice", "conv-1");
//! let sealer = PackSealer::new(&root, place, KeyId::new(1))?;
//! let mut enc = PackEncoder::new(PackConfig::default(), Some(Box::new(sealer)))?;
//! let mut object = enc.push_chunk(Timestamp::from_millis(0).unwrap(), &[7u8; 3200])?;
//! object.extend(enc.finish()?);
//!
//! // Reader: the header (from the tail) says how to build the opener.
//! let tail = PackTail::new(&object, object.len() as u64)?;
//! let params = SealParams::from(*tail.header().seal().unwrap());
//! let opener = PackOpener::new(&root, place, &params);
//! let index = tail.index(Some(&opener))?;
//! let frame = index.frame_bytes(0, &object)?;
//! assert_eq!(index.decode_frame(0, frame, Some(&opener))?, vec![7u8; 3200]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use chunk_format::pack::{SealError, SealInfo, SegmentOpener, SegmentSealer};

use crate::KeyId;
use crate::pack::{PackOpener, PackSealer, SealParams, TAG_LEN};

/// The key id, salt and nonce prefix of a header's record (its scheme picks the opener:
/// [`PackOpener::new`] or [`PackOpener::v1`]).
impl From<SealInfo> for SealParams {
    fn from(info: SealInfo) -> SealParams {
        SealParams {
            key_id: KeyId::new(info.key_id),
            salt: info.salt,
            nonce_prefix: info.nonce_prefix,
        }
    }
}

impl SegmentSealer for PackSealer {
    fn seal_info(&self) -> SealInfo {
        PackSealer::seal_info(self)
    }

    fn overhead(&self) -> usize {
        TAG_LEN
    }

    fn seal(
        &mut self,
        counter: u32,
        aad: &[u8],
        plaintext: &[u8],
        last: bool,
    ) -> Result<Vec<u8>, SealError> {
        PackSealer::seal(self, counter, aad, plaintext, last).map_err(SealError::new)
    }
}

impl SegmentOpener for PackOpener {
    fn overhead(&self) -> usize {
        TAG_LEN
    }

    fn open(
        &self,
        counter: u32,
        aad: &[u8],
        sealed: &[u8],
        last: bool,
    ) -> Result<Vec<u8>, SealError> {
        PackOpener::open(self, counter, aad, sealed, last).map_err(SealError::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyId;
    use crate::PackRootKey;
    use crate::pack::{KeyScheme, PackPlace};

    #[test]
    fn seal_info_round_trips() {
        let root = PackRootKey::from_bytes([2; 32]);
        let sealer =
            PackSealer::new(&root, PackPlace::new("u", "c"), KeyId::new(0x0102_0304)).unwrap();
        let info = SegmentSealer::seal_info(&sealer);
        assert_eq!(info.key_id, 0x0102_0304);
        assert_eq!(info.scheme, KeyScheme::V2);
        assert_eq!(SealParams::from(info), sealer.params());
    }

    #[test]
    fn trait_calls_reach_the_stream_sealer() {
        let root = PackRootKey::from_bytes([2; 32]);
        let place = PackPlace::new("u", "c");
        let mut sealer = PackSealer::new(&root, place, KeyId::new(3)).unwrap();
        let info = SegmentSealer::seal_info(&sealer);
        let sealed = SegmentSealer::seal(&mut sealer, 0, b"aad", b"frame", false).unwrap();
        assert_eq!(sealed.len(), 5 + SegmentSealer::overhead(&sealer));
        // Out of order is refused through the trait too.
        assert!(SegmentSealer::seal(&mut sealer, 5, b"aad", b"x", false).is_err());
        let opener = PackOpener::new(&root, place, &SealParams::from(info));
        assert_eq!(
            SegmentOpener::open(&opener, 0, b"aad", &sealed, false).unwrap(),
            b"frame"
        );
        assert!(SegmentOpener::open(&opener, 0, b"aae", &sealed, false).is_err());
        assert!(SegmentOpener::open(&opener, 0, b"aad", &sealed, true).is_err());
    }
}
