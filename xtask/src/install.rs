//! Tools the xtask needs but a fresh machine lacks: the cache directory, `cargo install` into
//! it under a lock, and Debian packages through `apt-get`.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::cmd;

/// Returns the xtask's cache directory: `$XDG_CACHE_HOME/chunkvault`, else
/// `$HOME/.cache/chunkvault`. The directory is not created.
pub(crate) fn cache_dir() -> Result<PathBuf> {
    cache_dir_from(
        std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

fn cache_dir_from(xdg: Option<PathBuf>, home: Option<PathBuf>) -> Result<PathBuf> {
    // The XDG spec says a relative value is invalid and must be ignored.
    if let Some(xdg) = xdg.filter(|p| p.is_absolute()) {
        return Ok(xdg.join("chunkvault"));
    }
    let home = home
        .filter(|p| !p.as_os_str().is_empty())
        .context("neither XDG_CACHE_HOME nor HOME is set")?;
    Ok(home.join(".cache").join("chunkvault"))
}

/// An exclusive lock on a file in the cache, held until dropped.
#[derive(Debug)]
pub(crate) struct CacheLock {
    _file: File,
}

/// Takes the exclusive lock `<cache>/<name>.lock`, waiting (and saying so) while another
/// process holds it.
pub(crate) fn lock(name: &str) -> Result<CacheLock> {
    let dir = cache_dir()?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{name}.lock"));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            eprintln!(
                "xtask: waiting for {} (another xtask is installing)",
                path.display()
            );
            file.lock()
                .with_context(|| format!("cannot lock {}", path.display()))?;
        }
        Err(std::fs::TryLockError::Error(err)) => {
            return Err(err).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    Ok(CacheLock { _file: file })
}

/// What to `cargo install` and where.
pub(crate) struct CargoInstall<'a> {
    /// The crate spec, e.g. `garage@2.5.0`.
    pub(crate) spec: &'a str,
    /// Extra `cargo install` arguments (features).
    pub(crate) extra_args: &'a [&'a str],
    /// The `--root` directory; the binary lands in `<root>/bin/`.
    pub(crate) root: PathBuf,
    /// The binary's file name.
    pub(crate) binary: &'a str,
    /// The name of the lock file in the cache that serialises this install.
    pub(crate) lock_name: &'a str,
}

/// Returns `<root>/bin/<binary>`, installing it with `cargo install --locked` first when it
/// is missing. Concurrent callers wait for each other through the lock file.
pub(crate) fn cargo_install(install: &CargoInstall<'_>) -> Result<PathBuf> {
    let binary = install.root.join("bin").join(install.binary);
    if cmd::is_executable(&binary) {
        return Ok(binary);
    }
    let _lock = lock(install.lock_name)?;
    // Another run may have installed it while this one waited for the lock.
    if cmd::is_executable(&binary) {
        return Ok(binary);
    }
    eprintln!(
        "xtask: installing {} into {} (one time; this compiles from source)",
        install.spec,
        install.root.display()
    );
    let started = Instant::now();
    cmd::run(
        cmd::cargo()
            .args(["install", install.spec, "--locked"])
            .args(install.extra_args)
            .arg("--root")
            .arg(&install.root),
    )?;
    eprintln!(
        "xtask: installed {} in {:.1} s",
        install.spec,
        started.elapsed().as_secs_f64()
    );
    if !cmd::is_executable(&binary) {
        bail!(
            "`cargo install {}` succeeded but {} is not there",
            install.spec,
            binary.display()
        );
    }
    Ok(binary)
}

static APT_UPDATED: AtomicBool = AtomicBool::new(false);

/// Makes sure the Debian `packages` are installed: those that `dpkg -s` does not report as
/// installed are installed with `apt-get install -y`, after one `apt-get update` per run.
pub(crate) fn ensure_apt(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|package| !dpkg_installed(package))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    if !APT_UPDATED.swap(true, Ordering::SeqCst) {
        cmd::run(apt_command().arg("update"))?;
    }
    cmd::run(
        apt_command()
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    )?;
    let still_missing: Vec<&str> = missing
        .into_iter()
        .filter(|package| !dpkg_installed(package))
        .collect();
    if !still_missing.is_empty() {
        bail!(
            "apt-get did not install: {} (install them by hand, or pass --no-apt)",
            still_missing.join(" ")
        );
    }
    Ok(())
}

/// `apt-get`, through `sudo -n` when not root, never asking questions.
fn apt_command() -> Command {
    let root = cmd::output(Command::new("id").arg("-u")).is_ok_and(|uid| uid.trim() == "0");
    let mut command = if root {
        Command::new("apt-get")
    } else {
        let mut sudo = Command::new("sudo");
        sudo.args(["-n", "apt-get"]);
        sudo
    };
    command.env("DEBIAN_FRONTEND", "noninteractive");
    command
}

/// Tells whether `dpkg -s` reports `package` as installed.
fn dpkg_installed(package: &str) -> bool {
    let Ok(out) = Command::new("dpkg").args(["-s", package]).output() else {
        return false;
    };
    out.status.success() && dpkg_status_is_installed(&String::from_utf8_lossy(&out.stdout))
}

/// Tells whether `dpkg -s` output has the status line of an installed package (a removed
/// package whose configuration files remain is known to dpkg but not installed).
fn dpkg_status_is_installed(dpkg_output: &str) -> bool {
    dpkg_output
        .lines()
        .any(|line| line.trim_end() == "Status: install ok installed")
}

/// Creates `dir` and its parents.
pub(crate) fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_dir_prefers_an_absolute_xdg_cache_home() -> Result<()> {
        let home = Some(PathBuf::from("/home/u"));
        assert_eq!(
            cache_dir_from(Some("/xdg".into()), home.clone())?,
            PathBuf::from("/xdg/chunkvault")
        );
        assert_eq!(
            cache_dir_from(Some("relative".into()), home.clone())?,
            PathBuf::from("/home/u/.cache/chunkvault")
        );
        assert_eq!(
            cache_dir_from(None, home)?,
            PathBuf::from("/home/u/.cache/chunkvault")
        );
        assert!(cache_dir_from(None, None).is_err());
        Ok(())
    }

    #[test]
    fn dpkg_status_line_decides() {
        assert!(dpkg_status_is_installed(
            "Package: gcc\nStatus: install ok installed\nPriority: optional\n"
        ));
        assert!(!dpkg_status_is_installed(
            "Package: libopus-dev\nStatus: deinstall ok config-files\n"
        ));
        assert!(!dpkg_status_is_installed(""));
    }
}
