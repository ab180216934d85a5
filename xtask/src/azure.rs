//! An Azure Blob server for the integration tests: Azurite's blob service, in memory, on
//! loopback.
//!
//! Azurite comes from npm. Its version and its whole dependency tree are pinned by the
//! committed `xtask/azurite/package.json` and `package-lock.json`; `npm ci` installs exactly
//! those into `<cache>/azurite-3.35.0/` and checks every tarball against the lock's
//! `integrity` hash (install scripts are not run: none of the locked packages has one).
//! Azurite 3.35.0 is the newest release that runs on Node.js 20 (3.36 wants 21, 3.37 wants 22).
//!
//! Each start runs `node …/azurite/dist/src/blob/main.js` on a free port with in-memory
//! persistence (at most 1 GiB), telemetry off, and the request API version check skipped (OpenDAL may send a
//! newer `x-ms-version` than the emulator knows). Azurite starts with no container, so once
//! the port answers the xtask creates one with a Shared Key signed `Create Container` request,
//! as the well-known development account `devstoreaccount1` (its key is public, published
//! in Azurite's documentation; it protects nothing).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use hmac::{KeyInit as _, Mac as _};

use crate::server::{self, Kind, Launch};
use crate::{cmd, install};

/// The Azurite release `xtask/azurite/package.json` pins (and the lock file locks).
pub(crate) const AZURITE_VERSION: &str = "3.35.0";
/// Azurite's development account.
pub(crate) const ACCOUNT: &str = "devstoreaccount1";
/// The development account's key, as Azurite's documentation publishes it.
pub(crate) const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// The container created at start.
pub(crate) const CONTAINER: &str = "chunkvault-test";
/// The Blob REST API version of the `Create Container` request.
const API_VERSION: &str = "2021-08-06";

/// Azurite's blob service, as `cargo xtask azure` and `ci` run it.
pub(crate) const KIND: Kind = Kind {
    label: "Azure Blob",
    command: "azure",
    product: "Azurite 3.35.0",
    program: "azurite",
    run_dir: "azurite-run",
    state_dirs: &["data"],
    require_var: "CHUNKVAULT_REQUIRE_AZBLOB",
    install: azurite_blob_script,
    prepare,
};

/// Returns Azurite's blob service script, installing Azurite into the cache first when
/// missing.
pub(crate) fn azurite_blob_script() -> Result<PathBuf> {
    install::npm_ci(&install::NpmInstall {
        what: &format!("azurite@{AZURITE_VERSION}"),
        manifest_dir: crate::workspace_root()?.join("xtask").join("azurite"),
        root: install::cache_dir()?.join(format!("azurite-{AZURITE_VERSION}")),
        entry: "node_modules/azurite/dist/src/blob/main.js",
        lock_name: &format!("azurite-{AZURITE_VERSION}.install"),
    })
}

/// A blob service in `dir` on a free port; the container is created by [`create_container`].
fn prepare(script: &Path, dir: &Path) -> Result<Launch> {
    let node =
        cmd::find_on_path("node").context("Azurite needs Node.js (`node` is not on PATH)")?;
    let [port] = server::free_ports::<1>()?;
    let mut command = Command::new(node);
    command
        .arg(script)
        .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
        // In-memory persistence refuses `--location`; the working directory is where
        // Azurite would put anything else.
        .current_dir(dir.join("data"))
        .args([
            "--inMemoryPersistence",
            "--skipApiVersionCheck",
            "--disableTelemetry",
        ])
        // Objects live in memory; by default Azurite may take half of the machine's. The
        // suites store tens of MiB.
        .args(["--extentMemoryLimit", "1024"]);
    Ok(Launch {
        command,
        port,
        env: vec![("CHUNKVAULT_TEST_AZBLOB_URI".to_owned(), uri(port))],
        setup: Some(create_container),
    })
}

/// The store URI of the server on `port`: OpenDAL's azblob service on the emulator's
/// path-style endpoint (the account is the first path segment), with the account's key.
fn uri(port: u16) -> String {
    format!(
        "azblob://{CONTAINER}?endpoint=http://127.0.0.1:{port}/{ACCOUNT}\
         &account_name={ACCOUNT}&account_key={ACCOUNT_KEY}"
    )
}

/// Creates [`CONTAINER`] on the server on `port` (`PUT /<account>/<container>?restype=container`).
fn create_container(port: u16) -> Result<()> {
    let date = http_date(SystemTime::now());
    let authorization = create_container_authorization(&date)?;
    let request = format!(
        "PUT /{ACCOUNT}/{CONTAINER}?restype=container HTTP/1.1\r\n\
         Host: 127.0.0.1:{port}\r\n\
         Content-Length: 0\r\n\
         x-ms-date: {date}\r\n\
         x-ms-version: {API_VERSION}\r\n\
         Authorization: {authorization}\r\n\
         Connection: close\r\n\r\n"
    );
    let (status, response) = server::http_request(port, request.as_bytes())
        .context("cannot create the Azure Blob container")?;
    if status != 201 {
        bail!("creating the container {CONTAINER} answered {status}:\n{response}");
    }
    Ok(())
}

/// The `Authorization` header of the `Create Container` request dated `date`: Shared Key, as
/// the Blob service's "Authorize with Shared Key" specifies (all standard headers empty; a
/// zero `Content-Length` is signed as empty).
fn create_container_authorization(date: &str) -> Result<String> {
    let string_to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\n\
         x-ms-date:{date}\nx-ms-version:{API_VERSION}\n\
         /{ACCOUNT}/{ACCOUNT}/{CONTAINER}\nrestype:container"
    );
    let engine = base64::engine::general_purpose::STANDARD;
    let key = engine
        .decode(ACCOUNT_KEY)
        .context("the account key is not base64")?;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key)
        .map_err(|_| anyhow::anyhow!("HMAC takes a key of any length"))?;
    mac.update(string_to_sign.as_bytes());
    let signature = engine.encode(mac.finalize().into_bytes());
    Ok(format!("SharedKey {ACCOUNT}:{signature}"))
}

/// `time` as an HTTP date (RFC 9110 IMF-fixdate): `Sun, 06 Nov 1994 08:49:37 GMT`.
fn http_date(time: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (never negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn http_dates_are_imf_fixdates() {
        let at = |secs| http_date(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(at(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        // A leap day, and the last second of a century year that is a leap year.
        assert_eq!(at(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(at(978_307_199), "Sun, 31 Dec 2000 23:59:59 GMT");
        assert_eq!(at(1_796_083_200), "Tue, 01 Dec 2026 00:00:00 GMT");
    }

    #[test]
    fn the_container_request_is_signed_with_the_account_key() -> Result<()> {
        // The expected value was computed independently, with Python's hmac and base64.
        assert_eq!(
            create_container_authorization("Wed, 02 Dec 2026 04:17:49 GMT")?,
            "SharedKey devstoreaccount1:AQhDArNbnq+CIVk63e9eB0gbTqIq/KiR2zrxZvS1AzI="
        );
        Ok(())
    }

    #[test]
    fn the_uri_names_container_endpoint_and_account() {
        let uri = uri(10000);
        assert!(
            uri.starts_with(
                "azblob://chunkvault-test?endpoint=http://127.0.0.1:10000/devstoreaccount1&"
            ),
            "{uri}"
        );
        assert!(uri.contains("&account_name=devstoreaccount1&account_key=Eby8"));
        assert_eq!(KIND.product, format!("Azurite {AZURITE_VERSION}"));
    }
}
