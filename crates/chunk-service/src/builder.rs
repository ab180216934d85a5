//! [`ChunkServiceBuilder`]: a service from a store, with key material, the user database and
//! the configuration set by name.

use std::sync::Arc;

use chunk_crypto::Keyring;
use chunk_store::Store;

use crate::config::ServiceConfig;
use crate::error::ServiceError;
use crate::level::{InMemoryLevels, ProtectionLevel, ProtectionLevels};
use crate::service::ChunkService;

/// Builds a [`ChunkService`] (from [`ChunkService::builder`]). Unset parts default to: no key
/// material, every user at [`ProtectionLevel::Standard`] (Omi's default level), and
/// [`ServiceConfig::default`], which requires key material, so a builder without
/// [`keyring`](Self::keyring) fails closed at [`build`](Self::build) unless the configuration
/// disables encryption.
///
/// ```
/// use chunk_crypto::{KeyId, Keyring, MasterSecret};
/// use chunk_service::{ChunkService, ProtectionLevel};
/// use chunk_store::Store;
///
/// let keyring = Keyring::single(KeyId::new(1), MasterSecret::new(b"omi_".repeat(16))?);
/// let service = ChunkService::builder(Store::from_uri("memory://")?)
///     .keyring(keyring)
///     .default_level(ProtectionLevel::Enhanced)
///     .build()?;
/// # let _ = service;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct ChunkServiceBuilder {
    store: Store,
    keyring: Option<Keyring>,
    levels: Option<Arc<dyn ProtectionLevels>>,
    config: ServiceConfig,
}

impl std::fmt::Debug for ChunkServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkServiceBuilder")
            .field("store", &self.store)
            .field("has_keyring", &self.keyring.is_some())
            .field("has_levels", &self.levels.is_some())
            .field("config", &self.config)
            .finish()
    }
}

impl ChunkServiceBuilder {
    pub(crate) fn new(store: Store) -> ChunkServiceBuilder {
        ChunkServiceBuilder {
            store,
            keyring: None,
            levels: None,
            config: ServiceConfig::default(),
        }
    }

    /// The key material: master secrets by key id, the active one sealing new objects.
    pub fn keyring(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// The user database that says each user's protection level.
    pub fn levels(mut self, levels: Arc<dyn ProtectionLevels>) -> Self {
        self.levels = Some(levels);
        self
    }

    /// Every user at `level` (an in-memory user database that knows no one else).
    pub fn default_level(self, level: ProtectionLevel) -> Self {
        self.levels(Arc::new(InMemoryLevels::new(level)))
    }

    /// The configuration (layouts, pack format, concurrency, limits).
    pub fn config(mut self, config: ServiceConfig) -> Self {
        self.config = config;
        self
    }

    /// The service. Fails with [`ServiceError::MissingKeyring`] when the configuration
    /// requires encryption ([`crate::EncryptionPolicy::Required`], the default) and no key
    /// ring was given.
    pub fn build(self) -> Result<ChunkService, ServiceError> {
        let levels = self
            .levels
            .unwrap_or_else(|| Arc::new(InMemoryLevels::new(ProtectionLevel::Standard)));
        ChunkService::new(self.store, self.keyring, levels, self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EncryptionPolicy;

    #[test]
    fn a_builder_without_keys_fails_closed_unless_encryption_is_disabled() {
        let store = || Store::from_uri("memory://").expect("memory store");
        assert!(matches!(
            ChunkService::builder(store()).build(),
            Err(ServiceError::MissingKeyring)
        ));
        let disabled = ServiceConfig {
            encryption: EncryptionPolicy::Disabled,
            ..ServiceConfig::default()
        };
        let service = ChunkService::builder(store())
            .config(disabled)
            .build()
            .expect("disabled encryption needs no keys");
        assert_eq!(service.config().encryption, EncryptionPolicy::Disabled);
    }
}
