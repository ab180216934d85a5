//! A real S3 server for the integration tests: Garage, single node, on loopback.
//!
//! Garage is installed into the cache (`<cache>/garage-2.5.0/bin/garage`) when missing. Each
//! start writes a fresh config with free ports and fresh keys, wipes the data, and starts
//! `garage server --single-node --default-bucket`, which creates the key and the bucket before
//! the S3 port opens. Starting, stopping and the printed `export` lines are [`crate::server`]'s.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::install;
use crate::server::{self, Kind, Launch};

/// The Garage release the xtask installs and runs.
pub(crate) const GARAGE_VERSION: &str = "2.5.0";
/// The S3 region Garage is configured with.
pub(crate) const REGION: &str = "garage";
/// The bucket created at start.
pub(crate) const BUCKET: &str = "chunkvault-test";

/// Garage, as `cargo xtask s3` and `ci` run it.
pub(crate) const KIND: Kind = Kind {
    label: "S3",
    command: "s3",
    product: "Garage 2.5.0",
    program: "garage",
    run_dir: "garage-run",
    state_dirs: &["meta", "data"],
    require_var: "CHUNKVAULT_REQUIRE_S3",
    install: garage_binary,
    prepare,
};

/// Returns the Garage binary, installing it into the cache first when missing.
pub(crate) fn garage_binary() -> Result<PathBuf> {
    let cache = install::cache_dir()?;
    let spec = format!("garage@{GARAGE_VERSION}");
    let lock_name = format!("garage-{GARAGE_VERSION}.install");
    install::cargo_install(&install::CargoInstall {
        spec: &spec,
        extra_args: &["--no-default-features", "--features", "bundled-libs,sqlite"],
        root: cache.join(format!("garage-{GARAGE_VERSION}")),
        binary: "garage",
        lock_name: &lock_name,
    })
}

/// Writes a fresh config (free ports, fresh keys) for a server in `dir`.
fn prepare(garage: &Path, dir: &Path) -> Result<Launch> {
    let [rpc_port, s3_port] = server::free_ports::<2>()?;
    let access_key = format!("GK{}", server::random_hex(12)?);
    let secret_key = server::random_hex(32)?;
    let config_path = dir.join("garage.toml");
    std::fs::write(
        &config_path,
        config_text(dir, rpc_port, s3_port, &server::random_hex(32)?),
    )
    .with_context(|| format!("cannot write {}", config_path.display()))?;
    let mut command = Command::new(garage);
    command
        .arg("-c")
        .arg(&config_path)
        .args(["server", "--single-node", "--default-bucket"])
        .env("GARAGE_DEFAULT_ACCESS_KEY", &access_key)
        .env("GARAGE_DEFAULT_SECRET_KEY", &secret_key)
        .env("GARAGE_DEFAULT_BUCKET", BUCKET)
        .env(
            "RUST_LOG",
            std::env::var("GARAGE_LOG").unwrap_or_else(|_| "garage=info".into()),
        );
    let env = vec![
        ("AWS_ACCESS_KEY_ID".to_owned(), access_key),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), secret_key),
        ("AWS_REGION".to_owned(), REGION.to_owned()),
        (
            "CHUNKVAULT_TEST_S3_URI".to_owned(),
            format!("s3://{BUCKET}?endpoint=http://127.0.0.1:{s3_port}&region={REGION}"),
        ),
    ];
    Ok(Launch {
        command,
        port: s3_port,
        env,
        setup: None,
    })
}

/// The single-node Garage config for a server living in `dir`.
fn config_text(dir: &Path, rpc_port: u16, s3_port: u16, rpc_secret: &str) -> String {
    let meta = toml_string(&dir.join("meta").to_string_lossy());
    let data = toml_string(&dir.join("data").to_string_lossy());
    format!(
        "# Written by `cargo xtask s3`; rewritten at every start.\n\
         metadata_dir = {meta}\n\
         data_dir = {data}\n\
         db_engine = \"sqlite\"\n\
         replication_factor = 1\n\
         rpc_bind_addr = \"127.0.0.1:{rpc_port}\"\n\
         rpc_public_addr = \"127.0.0.1:{rpc_port}\"\n\
         rpc_secret = \"{rpc_secret}\"\n\
         \n\
         [s3_api]\n\
         s3_region = \"{REGION}\"\n\
         api_bind_addr = \"127.0.0.1:{s3_port}\"\n\
         root_domain = \".s3.garage.localhost\"\n"
    )
}

/// Quotes `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_ports_region_and_escaped_paths() {
        let text = config_text(Path::new("/c/q\"x"), 4001, 4002, "ab");
        assert!(
            text.contains("metadata_dir = \"/c/q\\\"x/meta\"\n"),
            "{text}"
        );
        assert!(text.contains("rpc_bind_addr = \"127.0.0.1:4001\"\n"));
        assert!(text.contains("api_bind_addr = \"127.0.0.1:4002\"\n"));
        assert!(text.contains("s3_region = \"garage\"\n"));
        assert!(text.contains("replication_factor = 1\n"));
        assert!(text.contains("db_engine = \"sqlite\"\n"));
    }

    #[test]
    fn the_product_names_the_pinned_version() {
        assert_eq!(KIND.product, format!("Garage {GARAGE_VERSION}"));
    }
}
