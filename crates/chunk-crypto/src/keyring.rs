//! Key ids and the key ring: several master secrets, one active for writing, all for reading.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use crate::error::{CryptoError, Result};
use chunk_format::pack::SealInfo;

use crate::keys::{MasterSecret, PackRootKey, UserKey};
use crate::pack::{KeyScheme, PackOpener, PackPlace, PackSealer, SealParams};

/// Names one master secret of a [`Keyring`]; every sealed pack records the id it was sealed
/// under. Displayed and parsed as `k<number>` (`k1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(u32);

impl KeyId {
    /// The id with number `n`.
    pub const fn new(n: u32) -> KeyId {
        KeyId(n)
    }

    /// The id's number (what the pack header stores, big-endian).
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "k{}", self.0)
    }
}

impl FromStr for KeyId {
    type Err = CryptoError;

    /// Parses `k` followed by decimal digits (no sign, no spaces), e.g. `k1`.
    fn from_str(text: &str) -> Result<KeyId> {
        let bad = || CryptoError::BadKeyId {
            text: text.to_owned(),
        };
        let digits = text.strip_prefix('k').ok_or_else(bad)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        digits.parse().map(KeyId).map_err(|_| bad())
    }
}

/// Several master secrets by [`KeyId`]: one active for writing, all usable for reading.
///
/// Rotation: [`Keyring::insert`] a new secret, [`Keyring::set_active`] it, re-seal stored data
/// (open under the old id, seal under the active one), then [`Keyring::remove`] the old secret.
/// Data still sealed under a removed id can no longer be opened ([`CryptoError::UnknownKey`]):
/// dropping a secret is how its data is made unreadable.
///
/// Omi objects carry no key id, so they are sealed and opened under the *Omi key id*: the id
/// holding Omi's `ENCRYPTION_SECRET`. It is pinned: [`Keyring::single`] pins it to its one id,
/// it changes only through [`Keyring::set_omi_key`], and [`Keyring::set_active`] never moves
/// it (rotating the pack key must not start sealing Omi frames under a secret Omi does not
/// have). The Omi id cannot be removed while it is the Omi id.
///
/// ```
/// use chunk_crypto::{KeyId, Keyring, MasterSecret, CryptoError};
///
/// let (k1, k2) = (KeyId::new(1), KeyId::new(2));
/// let mut ring = Keyring::single(k1, MasterSecret::new(vec![1; 32])?);
/// let old = ring.active_user_key("uid")?;
/// ring.insert(k2, MasterSecret::new(vec![2; 32])?)?;
/// ring.set_active(k2)?;
/// // Rotation moved the active id only; Omi frames stay under Omi's secret.
/// assert_eq!((ring.active_id(), ring.omi_key_id()), (k2, k1));
/// assert!(matches!(ring.remove(k1), Err(CryptoError::KeyInUse { .. })));
/// // Once Omi's secret is k2 too (Omi rotated), move the Omi id, then drop k1.
/// ring.set_omi_key(k2)?;
/// ring.remove(k1)?;
/// assert_eq!(ring.active_id(), k2);
/// assert!(matches!(ring.user_key(k1, "uid"), Err(CryptoError::UnknownKey { .. })));
/// # let _ = old;
/// # Ok::<(), CryptoError>(())
/// ```
pub struct Keyring {
    secrets: BTreeMap<KeyId, MasterSecret>,
    active: KeyId,
    /// Always present in `secrets`.
    omi: KeyId,
    /// Ids that open packs only to re-seal them ([`Keyring::retire`]).
    retired: BTreeSet<KeyId>,
}

impl Keyring {
    /// A ring holding one secret, which is active and the Omi key (the Omi key id is pinned
    /// to `id` and stays there when another id is made active).
    pub fn single(id: KeyId, secret: MasterSecret) -> Keyring {
        Keyring {
            secrets: BTreeMap::from([(id, secret)]),
            active: id,
            omi: id,
            retired: BTreeSet::new(),
        }
    }

    /// Adds `secret` under `id` (not active yet); refuses an id already present, so a secret
    /// is never silently replaced.
    pub fn insert(&mut self, id: KeyId, secret: MasterSecret) -> Result<()> {
        if self.secrets.contains_key(&id) {
            return Err(CryptoError::DuplicateKey { id });
        }
        self.secrets.insert(id, secret);
        Ok(())
    }

    /// Makes `id` the secret new data (packs) is sealed under. The Omi key id does not move
    /// ([`Keyring::set_omi_key`] moves it). A retired id is refused ([`CryptoError::KeyRetired`]).
    pub fn set_active(&mut self, id: KeyId) -> Result<()> {
        self.require(id)?;
        if self.retired.contains(&id) {
            return Err(CryptoError::KeyRetired { id });
        }
        self.active = id;
        Ok(())
    }

    /// Makes `id` the Omi key id: the secret Omi frames are sealed and opened under (the one
    /// holding Omi's `ENCRYPTION_SECRET`). `id` must be in the ring ([`CryptoError::UnknownKey`]
    /// otherwise, and nothing changes).
    pub fn set_omi_key(&mut self, id: KeyId) -> Result<()> {
        self.require(id)?;
        if self.retired.contains(&id) {
            return Err(CryptoError::KeyRetired { id });
        }
        self.omi = id;
        Ok(())
    }

    /// Retires `id`: packs sealed under it still open for re-sealing
    /// ([`Keyring::pack_opener_to_reseal`], what compaction uses) but no longer for reading
    /// ([`Keyring::pack_opener`] fails with [`CryptoError::KeyRetired`]). The step between
    /// rotating to a new key and removing the old one: once everything was re-sealed, an old
    /// pack put back into the bucket is not served. Refuses the active id and the Omi id
    /// ([`CryptoError::KeyInUse`]).
    pub fn retire(&mut self, id: KeyId) -> Result<()> {
        self.require(id)?;
        if id == self.active || id == self.omi {
            return Err(CryptoError::KeyInUse { id });
        }
        self.retired.insert(id);
        Ok(())
    }

    /// Whether `id` is retired.
    pub fn is_retired(&self, id: KeyId) -> bool {
        self.retired.contains(&id)
    }

    /// Drops the secret `id` (its bytes are wiped): everything sealed under it becomes
    /// unreadable. Refuses the active id and the Omi id ([`CryptoError::KeyInUse`]).
    pub fn remove(&mut self, id: KeyId) -> Result<()> {
        self.require(id)?;
        if id == self.active || id == self.omi {
            return Err(CryptoError::KeyInUse { id });
        }
        self.secrets.remove(&id);
        self.retired.remove(&id);
        Ok(())
    }

    /// The id new data is sealed under.
    pub fn active_id(&self) -> KeyId {
        self.active
    }

    /// The id Omi frames are sealed and opened under (pinned; see [`Keyring`]).
    pub fn omi_key_id(&self) -> KeyId {
        self.omi
    }

    /// Whether the ring holds a secret with this id.
    pub fn contains(&self, id: KeyId) -> bool {
        self.secrets.contains_key(&id)
    }

    /// Every id with its secret, in ascending id order (for [`crate::keyring_file`]).
    pub(crate) fn secrets(&self) -> impl Iterator<Item = (KeyId, &MasterSecret)> + '_ {
        self.secrets.iter().map(|(&id, secret)| (id, secret))
    }

    /// Every id in the ring, in ascending order.
    pub fn ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.secrets.keys().copied()
    }

    /// The Omi-derived key of user `uid` under secret `id`.
    pub fn user_key(&self, id: KeyId, uid: &str) -> Result<UserKey> {
        Ok(UserKey::derive(self.require(id)?, uid))
    }

    /// The key of user `uid` under the active secret.
    pub fn active_user_key(&self, uid: &str) -> Result<UserKey> {
        self.user_key(self.active, uid)
    }

    /// The key of user `uid` for Omi frames (under [`Keyring::omi_key_id`]).
    pub fn omi_key(&self, uid: &str) -> Result<UserKey> {
        self.user_key(self.omi_key_id(), uid)
    }

    /// The pack root key of user `uid` under secret `id` (what version-2 pack keys derive
    /// from; independent of [`Keyring::user_key`]).
    pub fn pack_root(&self, id: KeyId, uid: &str) -> Result<PackRootKey> {
        Ok(PackRootKey::derive(self.require(id)?, uid))
    }

    /// A sealer for a new (version-2) pack at `place`, under the active secret.
    pub fn pack_sealer(&self, place: PackPlace<'_>) -> Result<PackSealer> {
        PackSealer::new(&self.pack_root(self.active, place.uid)?, place, self.active)
    }

    /// An opener for reading the pack at `place` whose header recorded `seal`, under the secret
    /// `seal.key_id` names ([`CryptoError::UnknownKey`] once that secret was removed,
    /// [`CryptoError::KeyRetired`] once it was retired), by the header's key scheme.
    pub fn pack_opener(&self, place: PackPlace<'_>, seal: &SealInfo) -> Result<PackOpener> {
        let id = KeyId::new(seal.key_id);
        if self.retired.contains(&id) {
            return Err(CryptoError::KeyRetired { id });
        }
        self.pack_opener_to_reseal(place, seal)
    }

    /// An opener for a pack that is read only to be re-sealed under the active key: like
    /// [`Keyring::pack_opener`], retired ids included.
    pub fn pack_opener_to_reseal(
        &self,
        place: PackPlace<'_>,
        seal: &SealInfo,
    ) -> Result<PackOpener> {
        let params = SealParams::from(*seal);
        match seal.scheme {
            KeyScheme::V2 => Ok(PackOpener::new(
                &self.pack_root(params.key_id, place.uid)?,
                place,
                &params,
            )),
            KeyScheme::V1 => Ok(PackOpener::v1(
                &self.user_key(params.key_id, place.uid)?,
                &params,
            )),
            other => Err(CryptoError::UnknownScheme {
                version: other.header_version(),
            }),
        }
    }

    fn require(&self, id: KeyId) -> Result<&MasterSecret> {
        self.secrets.get(&id).ok_or(CryptoError::UnknownKey { id })
    }
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("ids", &self.secrets.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .field("omi", &self.omi)
            .field("retired", &self.retired)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> MasterSecret {
        MasterSecret::new(vec![byte; 32]).unwrap()
    }

    #[test]
    fn key_id_text_round_trips_and_rejects_junk() {
        assert_eq!(KeyId::new(7).to_string(), "k7");
        assert_eq!(
            "k4294967295".parse::<KeyId>().unwrap(),
            KeyId::new(u32::MAX)
        );
        for bad in [
            "",
            "k",
            "7",
            "K7",
            "k-1",
            "k+1",
            "k 1",
            "k4294967296",
            "k1x",
        ] {
            assert!(
                matches!(bad.parse::<KeyId>(), Err(CryptoError::BadKeyId { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn active_and_omi_ids() {
        let (k1, k2) = (KeyId::new(1), KeyId::new(2));
        let mut ring = Keyring::single(k1, secret(1));
        assert_eq!((ring.active_id(), ring.omi_key_id()), (k1, k1));
        assert!(matches!(
            ring.insert(k1, secret(9)),
            Err(CryptoError::DuplicateKey { id }) if id == k1
        ));
        ring.insert(k2, secret(2)).unwrap();
        ring.set_active(k2).unwrap();
        assert_eq!((ring.active_id(), ring.omi_key_id()), (k2, k1));
        assert_eq!(
            ring.omi_key("u").unwrap().expose_bytes(),
            UserKey::derive(&secret(1), "u").expose_bytes()
        );
        assert_eq!(
            ring.active_user_key("u").unwrap().expose_bytes(),
            UserKey::derive(&secret(2), "u").expose_bytes()
        );
        // The Omi key cannot be removed; moved to k2, k1 can.
        assert!(matches!(ring.remove(k1), Err(CryptoError::KeyInUse { id }) if id == k1));
        ring.set_omi_key(k2).unwrap();
        assert_eq!(ring.omi_key_id(), k2);
        ring.remove(k1).unwrap();
        assert_eq!(ring.ids().collect::<Vec<_>>(), [k2]);
        assert!(matches!(
            ring.set_active(k1),
            Err(CryptoError::UnknownKey { id }) if id == k1
        ));
        assert!(matches!(ring.remove(k2), Err(CryptoError::KeyInUse { .. })));
    }

    #[test]
    fn retired_keys_open_only_to_reseal() {
        let (k1, k2) = (KeyId::new(1), KeyId::new(2));
        let mut ring = Keyring::single(k1, secret(1));
        ring.insert(k2, secret(2)).unwrap();
        let place = PackPlace::new("u", "c");
        let params = ring.pack_sealer(place).unwrap().seal_info();
        assert_eq!(params.key_id, k1.get());
        // The active and the Omi key cannot be retired.
        assert!(matches!(ring.retire(k1), Err(CryptoError::KeyInUse { id }) if id == k1));
        ring.set_active(k2).unwrap();
        ring.set_omi_key(k2).unwrap();
        ring.retire(k1).unwrap();
        assert!(ring.is_retired(k1) && !ring.is_retired(k2));
        assert!(matches!(
            ring.pack_opener(place, &params),
            Err(CryptoError::KeyRetired { id }) if id == k1
        ));
        assert!(ring.pack_opener_to_reseal(place, &params).is_ok());
        // A retired key is not made active or the Omi key again.
        assert!(matches!(
            ring.set_active(k1),
            Err(CryptoError::KeyRetired { .. })
        ));
        assert!(matches!(
            ring.set_omi_key(k1),
            Err(CryptoError::KeyRetired { .. })
        ));
        assert!(matches!(
            ring.retire(KeyId::new(9)),
            Err(CryptoError::UnknownKey { .. })
        ));
        ring.remove(k1).unwrap();
        assert!(!ring.is_retired(k1));
    }

    #[test]
    fn rotation_keeps_the_omi_key() {
        let (k1, k2, k3) = (KeyId::new(1), KeyId::new(2), KeyId::new(3));
        let mut ring = Keyring::single(k1, secret(1));
        let omi_before = ring.omi_key("u").unwrap();
        for (id, byte) in [(k2, 2), (k3, 3)] {
            ring.insert(id, secret(byte)).unwrap();
            ring.set_active(id).unwrap();
            assert_eq!(ring.active_id(), id);
            assert_eq!(ring.omi_key_id(), k1, "set_active({id}) moved the Omi key");
            assert_eq!(
                ring.omi_key("u").unwrap().expose_bytes(),
                omi_before.expose_bytes()
            );
        }
        // Back to the Omi id as active, then away again: the Omi id never follows.
        ring.set_active(k1).unwrap();
        ring.set_active(k2).unwrap();
        assert_eq!(ring.omi_key_id(), k1);
        // The old active id can go; the Omi id cannot.
        ring.remove(k3).unwrap();
        assert!(matches!(ring.remove(k1), Err(CryptoError::KeyInUse { id }) if id == k1));
        assert_eq!(ring.ids().collect::<Vec<_>>(), [k1, k2]);
        assert_eq!(
            format!("{ring:?}"),
            "Keyring { ids: [KeyId(1), KeyId(2)], active: KeyId(2), omi: KeyId(1), retired: {} }"
        );
    }

    #[test]
    fn set_omi_key_to_an_absent_id_is_an_error_and_changes_nothing() {
        let (k1, k2, k3) = (KeyId::new(1), KeyId::new(2), KeyId::new(3));
        let mut ring = Keyring::single(k1, secret(1));
        ring.insert(k2, secret(2)).unwrap();
        assert!(matches!(
            ring.set_omi_key(k3),
            Err(CryptoError::UnknownKey { id }) if id == k3
        ));
        assert_eq!(ring.omi_key_id(), k1);
        // A removed id is absent too.
        ring.set_active(k2).unwrap();
        ring.set_omi_key(k2).unwrap();
        ring.remove(k1).unwrap();
        assert!(matches!(
            ring.set_omi_key(k1),
            Err(CryptoError::UnknownKey { id }) if id == k1
        ));
        assert_eq!(ring.omi_key_id(), k2);
    }

    #[test]
    fn debug_shows_ids_not_bytes() {
        let ring = Keyring::single(KeyId::new(1), secret(b'Z'));
        let shown = format!("{ring:?}");
        assert!(!shown.contains('Z') && !shown.contains("90"), "{shown}");
        assert!(
            shown.contains("k1") || shown.contains("KeyId(1)"),
            "{shown}"
        );
    }
}
