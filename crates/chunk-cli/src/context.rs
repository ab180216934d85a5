//! What every subcommand starts from: the store, the key material, and how to build services.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use chunk_crypto::keyring_file::parse_keyring;
use chunk_crypto::{KeyId, Keyring, MasterSecret};
use chunk_format::pack::PackConfig;
use chunk_service::{BatchLayout, ChunkService, EncryptionPolicy, ProtectionLevel, ServiceConfig};
use chunk_store::{ConversationId, Store, UserId};
use zeroize::{Zeroize, Zeroizing};

use crate::cli::{GlobalArgs, LayoutArg};
use crate::output;

/// The environment variable holding the master secret.
pub(crate) const SECRET_ENV: &str = "CHUNKVAULT_SECRET";

/// The key material of one invocation, as given (wiped on drop). Kept as bytes because a
/// [`Keyring`] is deliberately not `Clone` and each service owns one.
enum KeySource {
    /// One master secret (`--secret-file`, `CHUNKVAULT_SECRET`): key `k1`, active and Omi's.
    Secret(Zeroizing<Vec<u8>>),
    /// A keyring file's bytes (`--keyring`, `CHUNKVAULT_KEYRING`), parsed by chunk-crypto.
    Keyring(Zeroizing<Vec<u8>>),
}

/// Global state of one invocation.
pub(crate) struct Context {
    /// The store, shared by every service the command builds.
    pub(crate) store: Store,
    /// The key material, if any was given.
    keys: Option<KeySource>,
    /// Machine output requested.
    pub(crate) json: bool,
    /// Plaintext packs refused for every user (`--require-sealed`).
    require_sealed: bool,
}

impl Context {
    /// Opens the store and loads the key material: a keyring file, or one secret (file first,
    /// then environment); giving both is an error.
    pub(crate) fn new(global: &GlobalArgs) -> Result<Context> {
        let store = Store::from_uri(&global.store)?;
        let secret = match &global.secret_file {
            Some(path) => Some(secret_from_file(path)?),
            None => secret_from_env()?,
        };
        let keys = match (&global.keyring, secret) {
            (Some(_), Some(_)) => bail!(
                "both a keyring (--keyring / CHUNKVAULT_KEYRING) and a single secret                  (--secret-file / {SECRET_ENV}) were given: use one"
            ),
            (Some(path), None) => Some(KeySource::Keyring(read_keyring_file(path)?)),
            (None, secret) => secret.map(KeySource::Secret),
        };
        let ctx = Context {
            store,
            keys,
            json: global.json,
            require_sealed: global.require_sealed,
        };
        // Validate the secret once, up front (length).
        ctx.keyring()?;
        Ok(ctx)
    }

    /// A context over the same store with another secret (the demo's built-in one).
    pub(crate) fn with_secret(&self, secret: &[u8]) -> Result<Context> {
        let ctx = Context {
            store: self.store.clone(),
            keys: Some(KeySource::Secret(Zeroizing::new(secret.to_vec()))),
            json: self.json,
            require_sealed: self.require_sealed,
        };
        ctx.keyring()?;
        Ok(ctx)
    }

    /// The key ring, if key material was given: the keyring file's, or the one secret as key
    /// `k1` (active, and the Omi key).
    pub(crate) fn keyring(&self) -> Result<Option<Keyring>> {
        match &self.keys {
            None => Ok(None),
            Some(KeySource::Secret(secret)) => {
                let secret = MasterSecret::new(secret.to_vec()).context("the master secret")?;
                Ok(Some(Keyring::single(KeyId::new(1), secret)))
            }
            Some(KeySource::Keyring(bytes)) => Ok(Some(parse_keyring(bytes)?)),
        }
    }

    /// Whether key material was given.
    pub(crate) fn has_secret(&self) -> bool {
        self.keys.is_some()
    }

    /// Whether progress bars may be drawn: not with --json, and only on a terminal.
    pub(crate) fn progress(&self) -> bool {
        !self.json && std::io::stderr().is_terminal()
    }

    /// A service over the store writing `layout` (packs of audio at `sample_rate`), with every
    /// user at `level` (the command line has no user database). Without key material
    /// encryption is disabled: `enhanced` writes then fail closed and encrypted objects cannot
    /// be opened.
    pub(crate) fn service(
        &self,
        layout: LayoutArg,
        level: ProtectionLevel,
        sample_rate: u32,
    ) -> Result<ChunkService> {
        let keyring = self.keyring()?;
        let config = ServiceConfig {
            batch_layout: batch_layout(layout),
            pack: PackConfig {
                sample_rate,
                ..PackConfig::default()
            },
            encryption: if keyring.is_some() {
                EncryptionPolicy::Required
            } else {
                EncryptionPolicy::Disabled
            },
            require_sealed: self.require_sealed,
            ..ServiceConfig::default()
        };
        let builder = ChunkService::builder(self.store.clone())
            .default_level(level)
            .config(config);
        let builder = match keyring {
            Some(keyring) => builder.keyring(keyring),
            None => builder,
        };
        Ok(builder.build()?)
    }

    /// A service for reading: every user at level standard (the command line has no user
    /// database), so packs must be sealed only with `--require-sealed`.
    pub(crate) fn reader(&self) -> Result<ChunkService> {
        self.service(LayoutArg::Omi, ProtectionLevel::Standard, 16_000)
    }
}

/// The service's batch layout for a `--layout` value.
pub(crate) fn batch_layout(layout: LayoutArg) -> BatchLayout {
    match layout {
        LayoutArg::Omi => BatchLayout::Omi,
        LayoutArg::Pack => BatchLayout::Pack,
    }
}

/// The secret from [`SECRET_ENV`]: its UTF-8 bytes as they are, like Omi's
/// `ENCRYPTION_SECRET`.
fn secret_from_env() -> Result<Option<Zeroizing<Vec<u8>>>> {
    match std::env::var(SECRET_ENV) {
        Ok(text) => Ok(Some(Zeroizing::new(text.into_bytes()))),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(raw)) => {
            raw.into_encoded_bytes().zeroize();
            bail!("{SECRET_ENV} is not valid UTF-8")
        }
    }
}

/// A keyring file's bytes (warning when others can read it; parsed by [`Context::keyring`]).
pub(crate) fn read_keyring_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    if let Some(warning) = secret_file_warning(path, "keyring file") {
        output::note(&warning);
    }
    Ok(Zeroizing::new(std::fs::read(path).with_context(|| {
        format!("reading the keyring file {}", output::escaped_path(path))
    })?))
}

/// The secret from a file: its bytes, minus one trailing newline.
fn secret_from_file(path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    if let Some(warning) = secret_file_warning(path, "secret file") {
        output::note(&warning);
    }
    let mut bytes = Zeroizing::new(
        std::fs::read(path)
            .with_context(|| format!("reading the secret file {}", path.display()))?,
    );
    let len = bytes.len();
    if bytes.ends_with(b"\r\n") {
        bytes.truncate(len - 2);
    } else if bytes.ends_with(b"\n") {
        bytes.truncate(len - 1);
    }
    if bytes.is_empty() {
        bail!("the secret file {} is empty", path.display());
    }
    Ok(bytes)
}

/// Validates a user id.
pub(crate) fn user(uid: &str) -> Result<UserId> {
    UserId::new(uid).with_context(|| format!("--uid {uid:?}"))
}

/// Validates a conversation id.
pub(crate) fn conversation(conversation: &str) -> Result<ConversationId> {
    ConversationId::new(conversation).with_context(|| format!("--conversation {conversation:?}"))
}

/// A warning when a file holding secrets (`what`: "secret file", "keyring file") can be read by
/// its group or by others (mode `& 0o077`), as ssh warns about private keys; `None` when only
/// its owner can read it.
fn secret_file_warning(path: &Path, what: &str) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "chunkvault: warning: the {what} {} is readable by others (mode {:o}); chmod 600 it",
            output::escaped_path(path),
            mode & 0o777
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_secret_file_readable_by_others_gets_a_warning() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("secret");
        std::fs::write(&path, b"secret")?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        assert_eq!(secret_file_warning(&path, "secret file"), None);
        for mode in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
            let warning = secret_file_warning(&path, "secret file").unwrap_or_default();
            assert!(warning.contains(&format!("mode {mode:o}")), "{warning}");
            assert!(!warning.contains("secret\n"), "never the content");
        }
        Ok(())
    }
}
