//! `chunkvault keys`: the keyring file named by `--keyring` (format in docs/FORMAT.md,
//! "Keyring file"). Needs no store.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use chunk_crypto::keyring_file::{add_random_key, generate_keyring, parse_keyring, write_keyring};
use serde_json::json;

use crate::cli::{GlobalArgs, KeysCommand};
use crate::context::read_keyring_file;
use crate::output;

/// Runs a `keys` subcommand.
pub(crate) fn run(global: &GlobalArgs, command: &KeysCommand) -> Result<()> {
    let Some(path) = &global.keyring else {
        bail!("`keys` needs the keyring file: --keyring PATH (or CHUNKVAULT_KEYRING)");
    };
    match command {
        KeysCommand::New => new(path, global.json),
    }
}

/// `keys new`: create the file with `k1`, or add the next id and make it active.
fn new(path: &Path, json: bool) -> Result<()> {
    let existing = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_file() => true,
        Ok(_) => bail!(
            "{} is not a regular file; refusing to replace it",
            output::escaped_path(path)
        ),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
        Err(error) => {
            return Err(error).with_context(|| format!("reading {}", output::escaped_path(path)));
        }
    };
    let (ring, added) = if existing {
        let bytes = read_keyring_file(path)?;
        let mut ring = parse_keyring(&bytes)
            .with_context(|| format!("the keyring file {}", output::escaped_path(path)))?;
        let id = add_random_key(&mut ring)?;
        ring.set_active(id)?;
        (ring, id)
    } else {
        let ring = generate_keyring()?;
        let id = ring.active_id();
        (ring, id)
    };
    write_private_file(path, write_keyring(&ring).as_bytes())?;
    let ids: Vec<String> = ring.ids().map(|id| id.to_string()).collect();
    if json {
        return output::print_json(&json!({
            "keyring": path.to_string_lossy(),
            "created": !existing,
            "added": added.to_string(),
            "active": ring.active_id().to_string(),
            "omi": ring.omi_key_id().to_string(),
            "keys": ids,
        }));
    }
    output::write_text(&format!(
        "{} {}: added {added}, now active (keys {}; Omi key {})\n",
        if existing { "updated" } else { "created" },
        output::escaped_path(path),
        ids.join(", "),
        ring.omi_key_id(),
    ))
}

/// Replaces `path` with `bytes` atomically: a new file of mode 0600 next to it, synced, then
/// renamed over it (a crash leaves the old file or the new one, never half of either).
fn write_private_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", output::escaped_path(path)))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(name);
    temp_name.push(format!(".tmp-{}", std::process::id()));
    let temp = path.with_file_name(temp_name);
    let result = (|| -> std::io::Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result.with_context(|| format!("writing the keyring file {}", output::escaped_path(path)))
}
