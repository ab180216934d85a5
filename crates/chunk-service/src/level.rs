//! Protection levels: which users' audio the service encrypts, and where the level comes from.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chunk_store::UserId;

/// A user's data protection level, as Omi stores it on the user document.
///
/// Only [`ProtectionLevel::Enhanced`] is encrypted by the service (Omi's rule). E2EE payloads
/// are sealed by the client; the service stores them as given and reports them as client-sealed,
/// never as protected by the service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProtectionLevel {
    /// At-rest / in-transit protection of the bucket only: objects are stored in plaintext.
    Standard,
    /// Per-user AES-256-GCM keys held by the service: objects are sealed.
    Enhanced,
    /// End-to-end: the client seals the audio before upload; the service stores it as given.
    E2ee,
}

impl ProtectionLevel {
    /// The level's name as Omi writes it (`standard`, `enhanced`, `e2ee`).
    pub fn as_str(self) -> &'static str {
        match self {
            ProtectionLevel::Standard => "standard",
            ProtectionLevel::Enhanced => "enhanced",
            ProtectionLevel::E2ee => "e2ee",
        }
    }

    /// Whether the service seals objects written at this level.
    pub fn service_encrypts(self) -> bool {
        self == ProtectionLevel::Enhanced
    }
}

impl fmt::Display for ProtectionLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the three level names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protection level {0:?} (expected standard, enhanced or e2ee)")]
pub struct UnknownLevel(pub String);

impl FromStr for ProtectionLevel {
    type Err = UnknownLevel;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "standard" => Ok(ProtectionLevel::Standard),
            "enhanced" => Ok(ProtectionLevel::Enhanced),
            "e2ee" => Ok(ProtectionLevel::E2ee),
            other => Err(UnknownLevel(other.chars().take(40).collect())),
        }
    }
}

/// Why a user's level could not be looked up.
#[derive(Debug, thiserror::Error)]
#[error("looking up the protection level of user {uid}: {message}")]
pub struct LevelLookupError {
    /// The user.
    pub uid: String,
    /// What the user database said.
    pub message: String,
}

/// The user database, as far as storage needs it: the protection level of a user.
///
/// The service calls [`ProtectionLevels::level`] at most once per upload call (and not at all
/// when the caller passes the level), like Omi's batch writer.
#[async_trait]
pub trait ProtectionLevels: Send + Sync {
    /// The current protection level of `uid`.
    async fn level(&self, uid: &UserId) -> Result<ProtectionLevel, LevelLookupError>;
}

/// An in-memory user database: a level per user, a default for everyone else, and a count of
/// lookups (tests assert how often the service asks).
#[derive(Debug)]
pub struct InMemoryLevels {
    default: ProtectionLevel,
    levels: Mutex<HashMap<String, ProtectionLevel>>,
    lookups: AtomicUsize,
}

impl InMemoryLevels {
    /// A database where every user has `default` until [`InMemoryLevels::set`] says otherwise.
    pub fn new(default: ProtectionLevel) -> InMemoryLevels {
        InMemoryLevels {
            default,
            levels: Mutex::new(HashMap::new()),
            lookups: AtomicUsize::new(0),
        }
    }

    /// Sets the level of one user.
    pub fn set(&self, uid: &UserId, level: ProtectionLevel) {
        self.levels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(uid.as_str().to_owned(), level);
    }

    /// How many times [`ProtectionLevels::level`] was called.
    pub fn lookups(&self) -> usize {
        self.lookups.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl ProtectionLevels for InMemoryLevels {
    async fn level(&self, uid: &UserId) -> Result<ProtectionLevel, LevelLookupError> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let levels = self
            .levels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(levels.get(uid.as_str()).copied().unwrap_or(self.default))
    }
}
