//! A real S3 server for the integration tests: Garage, single node, on loopback.
//!
//! Garage is installed into the cache (`<cache>/garage-2.5.0/bin/garage`) when missing. Each
//! start writes a fresh config with free ports and fresh keys, wipes the data, and starts
//! `garage server --single-node --default-bucket`, which creates the key and the bucket before
//! the S3 port opens. The environment the tests read is printed as `export` lines.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{cmd, install};

/// The Garage release the xtask installs and runs.
pub(crate) const GARAGE_VERSION: &str = "2.5.0";
/// The S3 region Garage is configured with.
pub(crate) const REGION: &str = "garage";
/// The bucket created at start.
pub(crate) const BUCKET: &str = "chunkvault-test";
/// How long a start may take before it is declared failed.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stop waits for SIGTERM to work before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

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

/// The directory of the long-running server that `cargo xtask s3` starts.
fn dev_dir() -> Result<PathBuf> {
    Ok(install::cache_dir()?.join("garage-run"))
}

/// A started Garage server and the environment that points tests at it.
#[derive(Debug)]
pub(crate) struct Server {
    dir: PathBuf,
    pid: u32,
    /// The child handle when this process should reap it (not detached).
    child: Option<Child>,
    port: u16,
    env: Vec<(String, String)>,
    startup: Duration,
}

impl Server {
    /// The variables the S3 integration tests read, as (name, value) pairs.
    pub(crate) fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// How long the server took from spawn to answering HTTP.
    pub(crate) fn startup(&self) -> Duration {
        self.startup
    }
}

/// Stops a server when dropped, and removes its directory: the S3 server of one `ci` run.
#[derive(Debug)]
pub(crate) struct ServerGuard {
    server: Server,
}

impl ServerGuard {
    /// The running server.
    pub(crate) fn server(&self) -> &Server {
        &self.server
    }
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        match stop_dir(&self.server.dir) {
            Ok(_) => {
                if let Some(child) = self.server.child.as_mut() {
                    let _ = child.wait();
                }
                eprintln!("xtask: stopped the S3 server (pid {})", self.server.pid);
                if let Err(err) = std::fs::remove_dir_all(&self.server.dir) {
                    eprintln!(
                        "xtask: warning: cannot remove {}: {err}",
                        self.server.dir.display()
                    );
                }
            }
            Err(err) => eprintln!("xtask: warning: cannot stop the S3 server: {err:#}"),
        }
    }
}

/// Starts a server for one `ci` run in its own directory, in this process group (so that an
/// interrupt reaches it too); it stops when the guard is dropped.
pub(crate) fn start_for_ci() -> Result<ServerGuard> {
    let garage = garage_binary()?;
    let dir = dev_dir()?.join(format!("ci-{}", std::process::id()));
    let server = start(&garage, &dir, false)?;
    Ok(ServerGuard { server })
}

/// `cargo xtask s3`: (re)starts the developer server, detached, and prints its environment.
pub(crate) fn start_dev() -> Result<()> {
    let garage = garage_binary()?;
    let dir = dev_dir()?;
    let server = start(&garage, &dir, true)?;
    eprintln!(
        "xtask: Garage {GARAGE_VERSION} serves S3 on http://127.0.0.1:{} (pid {}, ready in {:.2} s, log {})",
        server.port,
        server.pid,
        server.startup.as_secs_f64(),
        dir.join("garage.log").display()
    );
    eprintln!(
        "xtask: stop it with `cargo xtask s3 --stop`; set the variables with `eval \"$(cargo xtask s3 --print-env)\"`"
    );
    print!("{}", export_lines(&server.env));
    Ok(())
}

/// `cargo xtask s3 --print-env`: prints the environment of the running developer server.
pub(crate) fn print_dev_env() -> Result<()> {
    let dir = dev_dir()?;
    let running = read_pid(&dir)?.is_some_and(is_garage_running);
    if !running {
        bail!("no S3 server is running; start one with `cargo xtask s3`");
    }
    let path = dir.join("env");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    print!("{text}");
    Ok(())
}

/// `cargo xtask s3 --stop`: stops the developer server, if one runs.
pub(crate) fn stop_dev() -> Result<()> {
    let dir = dev_dir()?;
    if stop_dir(&dir)? {
        eprintln!("xtask: stopped the S3 server");
    } else {
        eprintln!("xtask: no S3 server was running");
    }
    Ok(())
}

/// Starts Garage with a fresh config and fresh data in `dir`; `detached` puts it in its own
/// process group so it outlives this process and ignores the terminal's interrupt.
fn start(garage: &Path, dir: &Path, detached: bool) -> Result<Server> {
    stop_dir(dir)?;
    for sub in ["meta", "data"] {
        let path = dir.join(sub);
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot wipe {}", path.display()))?;
        }
        install::create_dir(&path)?;
    }
    let (rpc_port, s3_port) = two_free_ports()?;
    let access_key = format!("GK{}", random_hex(12)?);
    let secret_key = random_hex(32)?;
    let config_path = dir.join("garage.toml");
    std::fs::write(
        &config_path,
        config_text(dir, rpc_port, s3_port, &random_hex(32)?),
    )
    .with_context(|| format!("cannot write {}", config_path.display()))?;

    let log_path = dir.join("garage.log");
    let log =
        File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let log_err = log.try_clone().context("cannot duplicate the log file")?;
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
        )
        // Plain text in the log file, not terminal colours.
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    if detached {
        command.process_group(0);
    }
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", garage.display()))?;
    let pid = child.id();
    let pid_path = dir.join("garage.pid");
    std::fs::write(&pid_path, format!("{pid}\n"))
        .with_context(|| format!("cannot write {}", pid_path.display()))?;

    if let Err(err) = wait_ready(&mut child, s3_port) {
        let _ = stop_dir(dir);
        let _ = child.wait();
        bail!(
            "{err:#}\n--- last lines of {} ---\n{}",
            log_path.display(),
            log_tail(&log_path, 30)
        );
    }
    let startup = started.elapsed();

    let env = vec![
        ("AWS_ACCESS_KEY_ID".to_owned(), access_key),
        ("AWS_SECRET_ACCESS_KEY".to_owned(), secret_key),
        ("AWS_REGION".to_owned(), REGION.to_owned()),
        (
            "CHUNKVAULT_TEST_S3_URI".to_owned(),
            format!("s3://{BUCKET}?endpoint=http://127.0.0.1:{s3_port}&region={REGION}"),
        ),
    ];
    let env_path = dir.join("env");
    std::fs::write(&env_path, export_lines(&env))
        .with_context(|| format!("cannot write {}", env_path.display()))?;
    Ok(Server {
        dir: dir.to_path_buf(),
        pid,
        child: (!detached).then_some(child),
        port: s3_port,
        env,
        startup,
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

/// Renders `export NAME='value'` lines, quoted for POSIX shells.
pub(crate) fn export_lines(env: &[(String, String)]) -> String {
    env.iter()
        .map(|(name, value)| format!("export {name}='{}'\n", value.replace('\'', r"'\''")))
        .collect()
}

/// Waits until the S3 port answers HTTP, the process exits, or the timeout passes.
fn wait_ready(child: &mut Child, port: u16) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().context("cannot poll garage")? {
            bail!("garage exited during start-up ({status})");
        }
        if answers_http(port) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "garage did not answer HTTP on 127.0.0.1:{port} within {} s",
                READY_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Tells whether an unauthenticated `GET /` on the port gets an HTTP response of any status.
fn answers_http(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 5];
    stream.read_exact(&mut head).is_ok() && &head == b"HTTP/"
}

/// Two distinct loopback ports that were free a moment ago.
fn two_free_ports() -> Result<(u16, u16)> {
    // Hold both listeners at once so the kernel cannot hand out the same port twice.
    let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot find a free port")?;
    let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot find a free port")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

/// `bytes` random bytes from the kernel, as lowercase hex.
fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("cannot read /dev/urandom")?;
    Ok(buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

fn read_pid(dir: &Path) -> Result<Option<u32>> {
    let path = dir.join("garage.pid");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().parse().ok()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Tells whether `pid` is a live (not zombie) process whose command line names garage;
/// guards against signalling an unrelated process that reused the pid.
fn is_garage_running(pid: u32) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) else {
        return false;
    };
    // The state follows the parenthesised command name: "pid (comm) S ...".
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z" | "X") | None) {
        return false;
    }
    std::fs::read(proc_dir.join("cmdline"))
        .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("garage"))
}

/// Stops the server whose pid file is in `dir` (SIGTERM, then SIGKILL after a while) and
/// removes its pid and env files. Returns whether a server was running.
fn stop_dir(dir: &Path) -> Result<bool> {
    let Some(pid) = read_pid(dir)? else {
        return Ok(false);
    };
    let was_running = is_garage_running(pid);
    if was_running {
        signal(pid, "TERM")?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while is_garage_running(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if is_garage_running(pid) {
            eprintln!("xtask: garage (pid {pid}) ignored SIGTERM; sending SIGKILL");
            signal(pid, "KILL")?;
        }
    }
    for file in ["garage.pid", "env"] {
        let path = dir.join(file);
        if let Err(err) = std::fs::remove_file(&path)
            && err.kind() != std::io::ErrorKind::NotFound
        {
            return Err(err).with_context(|| format!("cannot remove {}", path.display()));
        }
    }
    Ok(was_running)
}

/// Sends `SIG<name>` to `pid` with the shell's `kill` builtin (no `unsafe` libc call).
fn signal(pid: u32, name: &str) -> Result<()> {
    let pid = pid.to_string();
    let ok =
        cmd::succeeds(Command::new("sh").args(["-c", "kill -s \"$1\" \"$2\"", "sh", name, &pid]));
    if !ok {
        bail!("cannot send SIG{name} to garage (pid {pid})");
    }
    Ok(())
}

/// The last `lines` lines of the file at `path`, or a note that it cannot be read.
fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(err) => format!("(cannot read the log: {err})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_lines_quote_for_the_shell() {
        let env = vec![
            (
                "A".to_owned(),
                "s3://b?endpoint=http://h:1&region=g".to_owned(),
            ),
            ("B".to_owned(), "it's".to_owned()),
        ];
        assert_eq!(
            export_lines(&env),
            "export A='s3://b?endpoint=http://h:1&region=g'\nexport B='it'\\''s'\n"
        );
    }

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
    fn random_hex_has_the_asked_length_and_alphabet() -> Result<()> {
        let a = random_hex(32)?;
        assert_eq!(a.len(), 64);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, random_hex(32)?);
        Ok(())
    }

    #[test]
    fn ports_are_distinct() -> Result<()> {
        let (a, b) = two_free_ports()?;
        assert_ne!(a, b);
        assert_ne!(a, 0);
        Ok(())
    }

    #[test]
    fn answers_http_tells_http_from_silence() -> Result<()> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let server = std::thread::spawn(move || -> std::io::Result<()> {
            let (mut conn, _) = listener.accept()?;
            let mut buf = [0u8; 256];
            let _ = conn.read(&mut buf)?;
            conn.write_all(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        });
        assert!(answers_http(port));
        server
            .join()
            .map_err(|_| anyhow::anyhow!("server thread panicked"))??;
        // Nothing listens there any more.
        assert!(!answers_http(port));
        Ok(())
    }

    #[test]
    fn a_missing_pid_file_means_nothing_to_stop() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-s3-test-{}", std::process::id()));
        install::create_dir(&dir)?;
        assert!(!stop_dir(&dir)?);
        // A pid file naming a process that is not garage (this test) is not signalled.
        std::fs::write(dir.join("garage.pid"), format!("{}\n", std::process::id()))?;
        assert!(!stop_dir(&dir)?);
        assert!(!dir.join("garage.pid").exists());
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
