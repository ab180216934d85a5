//! The [`ChunkService`] handle: a store, key material, the user database and a configuration.

use std::sync::Arc;

use chunk_crypto::{Keyring, UserKey};
use chunk_store::{Store, UserId};

use crate::config::{EncryptionPolicy, ServiceConfig};
use crate::error::ServiceError;
use crate::level::{ProtectionLevel, ProtectionLevels};

/// chunkvault's storage behaviour over one store: upload (single and batch), list, delete,
/// download-and-merge, conversation delete and user purge.
///
/// Cheap to clone: clones share the store, key ring and user database.
#[derive(Clone)]
pub struct ChunkService {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) store: Store,
    pub(crate) keyring: Option<Keyring>,
    pub(crate) levels: Arc<dyn ProtectionLevels>,
    pub(crate) config: ServiceConfig,
}

impl std::fmt::Debug for ChunkService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkService")
            .field("store", &self.inner.store)
            .field("has_keyring", &self.inner.keyring.is_some())
            .field("config", &self.inner.config)
            .finish()
    }
}

impl ChunkService {
    /// A builder of a service over `store`: key material, the user database and the
    /// configuration are set by name ([`ChunkServiceBuilder`](crate::ChunkServiceBuilder)).
    pub fn builder(store: Store) -> crate::builder::ChunkServiceBuilder {
        crate::builder::ChunkServiceBuilder::new(store)
    }

    /// Builds a service from all its parts at once (the builder's `build`). Fails closed: with [`EncryptionPolicy::Required`] (the default) a
    /// missing key ring is [`ServiceError::MissingKeyring`].
    pub fn new(
        store: Store,
        keyring: Option<Keyring>,
        levels: Arc<dyn ProtectionLevels>,
        config: ServiceConfig,
    ) -> Result<ChunkService, ServiceError> {
        if config.encryption == EncryptionPolicy::Required && keyring.is_none() {
            return Err(ServiceError::MissingKeyring);
        }
        Ok(ChunkService {
            inner: Arc::new(Inner {
                store,
                keyring,
                levels,
                config,
            }),
        })
    }

    /// The store this service writes to (for operation counts and direct inspection).
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The configuration.
    pub fn config(&self) -> &ServiceConfig {
        &self.inner.config
    }

    /// The user's level: `given` if the caller passed one, else one lookup in the user database.
    pub(crate) async fn resolve_level(
        &self,
        uid: &UserId,
        given: Option<ProtectionLevel>,
    ) -> Result<ProtectionLevel, ServiceError> {
        match given {
            Some(level) => Ok(level),
            None => Ok(self.inner.levels.level(uid).await?),
        }
    }

    /// The key that seals and opens this user's Omi objects, if the service has key material.
    pub(crate) fn omi_key(&self, uid: &UserId) -> Result<Option<UserKey>, ServiceError> {
        match &self.inner.keyring {
            None => Ok(None),
            Some(keyring) => {
                keyring
                    .omi_key(uid.as_str())
                    .map(Some)
                    .map_err(|source| ServiceError::Crypto {
                        path: format!("(key for user {uid})"),
                        source,
                    })
            }
        }
    }

    /// The key to seal with at `level`: `Some` for `enhanced`, `None` otherwise; an `enhanced`
    /// user without key material is an error, never plaintext.
    pub(crate) fn sealing_key(
        &self,
        uid: &UserId,
        level: ProtectionLevel,
    ) -> Result<Option<UserKey>, ServiceError> {
        if !level.service_encrypts() {
            return Ok(None);
        }
        self.omi_key(uid)?
            .map(Some)
            .ok_or_else(|| ServiceError::NoKeyMaterial {
                uid: uid.to_string(),
            })
    }
}
