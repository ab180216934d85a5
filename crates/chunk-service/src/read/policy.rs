//! What a read accepts, decided in one place: whether a user's packs must be sealed, and how
//! much decoded audio one piece of an object may claim.

use chunk_format::ObjectKind;
use chunk_store::UserId;

use crate::error::ServiceError;
use crate::level::ProtectionLevel;
use crate::service::ChunkService;

/// Whether the packs a read meets must be sealed.
///
/// Whether a pack is sealed is read off its own header, which anyone who can write to the
/// bucket can make say "plaintext"; so for a user whose audio must be sealed, a plaintext pack
/// is refused ([`ServiceError::Unsealed`]) instead of served on its CRC-32C alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PackSealing {
    /// Only sealed packs are accepted: the user is at level `enhanced`, or the deployment
    /// requires sealing ([`crate::ServiceConfig::require_sealed`]).
    Required,
    /// Sealed and plaintext packs are both accepted.
    Optional,
}

impl PackSealing {
    /// Refuses a plaintext pack at `path` when sealing is required.
    pub(crate) fn check(self, path: &str, sealed: bool) -> Result<(), ServiceError> {
        if self == PackSealing::Required && !sealed {
            return Err(ServiceError::Unsealed {
                path: path.to_owned(),
            });
        }
        Ok(())
    }
}

/// Why a sealed pack is opened: key ids the key ring has retired open packs only to re-seal
/// them under the active key (compaction), never to serve them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenFor {
    /// Downloads, checks, rewrites, identical-retry checks.
    Reading,
    /// Compaction, which writes the audio again under the active key.
    Resealing,
}

impl ChunkService {
    /// The rule for packs of a user at `level`.
    pub(crate) fn pack_sealing_at(&self, level: ProtectionLevel) -> PackSealing {
        if self.inner.config.require_sealed || level == ProtectionLevel::Enhanced {
            PackSealing::Required
        } else {
            PackSealing::Optional
        }
    }

    /// The rule for `uid`'s packs: without [`crate::ServiceConfig::require_sealed`], one
    /// lookup of the user's level.
    pub(crate) async fn pack_sealing(&self, uid: &UserId) -> Result<PackSealing, ServiceError> {
        if self.inner.config.require_sealed {
            return Ok(PackSealing::Required);
        }
        let level = self.resolve_level(uid, None).await?;
        Ok(self.pack_sealing_at(level))
    }

    /// Refuses a piece of `path` (`what`: "chunk 3", "the object") that claims to decode to
    /// `claimed` bytes when that is above [`crate::ServiceConfig::max_decoded_chunk`]. Called
    /// before anything is decoded.
    pub(crate) fn check_claim(
        &self,
        path: &str,
        what: impl FnOnce() -> String,
        claimed: u64,
    ) -> Result<(), ServiceError> {
        claim_within(
            path,
            what,
            claimed,
            self.inner.config.max_decoded_chunk as u64,
        )
    }

    /// Refuses an Omi object of `size` stored bytes that would decode, or be held, above the
    /// limit, before it is read: raw PCM decodes to its size, Omi frames to less than theirs,
    /// and an Opus object is held whole before its container's claim is checked (by the
    /// decoder, with [`claim_within`]).
    pub(crate) fn check_omi_size(
        &self,
        path: &str,
        kind: ObjectKind,
        size: u64,
    ) -> Result<(), ServiceError> {
        if kind == ObjectKind::Pack {
            return Ok(());
        }
        self.check_claim(path, || "the object".to_owned(), size)
    }
}

/// Refuses `claimed` decoded bytes of a piece of `path` above `limit`
/// ([`ServiceError::TooLarge`]); what [`ChunkService::check_claim`] applies with the
/// configured limit.
pub(crate) fn claim_within(
    path: &str,
    what: impl FnOnce() -> String,
    claimed: u64,
    limit: u64,
) -> Result<(), ServiceError> {
    if claimed > limit {
        return Err(ServiceError::TooLarge {
            path: path.to_owned(),
            what: what(),
            claimed,
            limit,
        });
    }
    Ok(())
}
