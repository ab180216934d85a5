//! Real storage servers for the integration tests, on loopback: what `cargo xtask s3`,
//! `cargo xtask gcs` and `cargo xtask azure` share.
//!
//! Each server [`Kind`] says how to install its program and how to launch it in a directory;
//! this module does the rest the same way for all of them: it wipes the server's state, picks
//! free ports, starts the program with its output in `<program>.log` and its pid in
//! `<program>.pid`, waits until the port answers HTTP, runs the kind's setup (a bucket or a
//! container), and writes the `export` lines the tests read to `env`. A developer server runs
//! detached in `<cache>/<run_dir>/` until `--stop`; a `ci` run's server runs in
//! `<cache>/<run_dir>/ci-<pid>/` and stops (directory removed) when its guard is dropped.

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

/// How long a start may take before it is declared failed.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stop waits for SIGTERM to work before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// One kind of server: everything that differs between Garage, fake-gcs-server and Azurite.
pub(crate) struct Kind {
    /// What the messages call the service: `S3`, `GCS`, `Azure Blob`.
    pub(crate) label: &'static str,
    /// The xtask command: `s3`, `gcs`, `azure`.
    pub(crate) command: &'static str,
    /// The server and its version, for messages: `Garage 2.5.0`.
    pub(crate) product: &'static str,
    /// The program's name: it names the pid and log files, and a pid is only signalled when
    /// its command line contains it.
    pub(crate) program: &'static str,
    /// The directory under the cache that the developer server runs in.
    pub(crate) run_dir: &'static str,
    /// Subdirectories of the server's directory that hold its state, wiped at every start.
    pub(crate) state_dirs: &'static [&'static str],
    /// The variable that makes the tests fail, not skip, without this server (set by `ci`).
    pub(crate) require_var: &'static str,
    /// Installs the program into the cache when missing; returns what `prepare` gets.
    pub(crate) install: fn() -> Result<PathBuf>,
    /// Writes the config for a server in `dir` (state directories fresh) and returns how to
    /// launch it; gets what `install` returned.
    pub(crate) prepare: fn(installed: &Path, dir: &Path) -> Result<Launch>,
}

/// How to launch one server, from [`Kind::prepare`].
pub(crate) struct Launch {
    /// The program and its arguments and environment; stdio is set here.
    pub(crate) command: Command,
    /// The port that answers HTTP once the server is up.
    pub(crate) port: u16,
    /// The variables the integration tests read, as (name, value) pairs.
    pub(crate) env: Vec<(String, String)>,
    /// Runs once the port answers (creates the bucket, for instance), with the port.
    pub(crate) setup: Option<fn(u16) -> Result<()>>,
}

/// A started server and the environment that points tests at it.
#[derive(Debug)]
pub(crate) struct Server {
    label: &'static str,
    program: &'static str,
    dir: PathBuf,
    pid: u32,
    /// The child handle when this process should reap it (not detached).
    child: Option<Child>,
    port: u16,
    env: Vec<(String, String)>,
    startup: Duration,
}

impl Server {
    /// The variables the integration tests read, as (name, value) pairs.
    pub(crate) fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// How long the server took from spawn to answering HTTP, setup included.
    pub(crate) fn startup(&self) -> Duration {
        self.startup
    }
}

/// Stops a server when dropped, and removes its directory: a server of one `ci` run.
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
        let server = &mut self.server;
        match stop_dir(&server.dir, server.program) {
            Ok(_) => {
                if let Some(child) = server.child.as_mut() {
                    let _ = child.wait();
                }
                eprintln!(
                    "xtask: stopped the {} server (pid {})",
                    server.label, server.pid
                );
                if let Err(err) = std::fs::remove_dir_all(&server.dir) {
                    eprintln!(
                        "xtask: warning: cannot remove {}: {err}",
                        server.dir.display()
                    );
                }
            }
            Err(err) => eprintln!(
                "xtask: warning: cannot stop the {} server: {err:#}",
                server.label
            ),
        }
    }
}

/// The directory of the long-running server that `cargo xtask <command>` starts.
fn dev_dir(kind: &Kind) -> Result<PathBuf> {
    Ok(install::cache_dir()?.join(kind.run_dir))
}

/// Starts a server for one `ci` run in its own directory, in this process group (so that an
/// interrupt reaches it too); it stops when the guard is dropped.
pub(crate) fn start_for_ci(kind: &Kind) -> Result<ServerGuard> {
    let installed = (kind.install)()?;
    let dir = dev_dir(kind)?.join(format!("ci-{}", std::process::id()));
    let server = start(kind, &installed, &dir, false)?;
    Ok(ServerGuard { server })
}

/// `cargo xtask <command>`: (re)starts the developer server, detached, and prints its
/// environment.
pub(crate) fn start_dev(kind: &Kind) -> Result<()> {
    let installed = (kind.install)()?;
    let dir = dev_dir(kind)?;
    let server = start(kind, &installed, &dir, true)?;
    eprintln!(
        "xtask: {} serves {} on http://127.0.0.1:{} (pid {}, ready in {:.2} s, log {})",
        kind.product,
        kind.label,
        server.port,
        server.pid,
        server.startup.as_secs_f64(),
        dir.join(format!("{}.log", kind.program)).display()
    );
    eprintln!(
        "xtask: stop it with `cargo xtask {0} --stop`; set the variables with `eval \"$(cargo xtask {0} --print-env)\"`",
        kind.command
    );
    print!("{}", export_lines(&server.env));
    Ok(())
}

/// `cargo xtask <command> --print-env`: prints the environment of the running developer
/// server.
pub(crate) fn print_dev_env(kind: &Kind) -> Result<()> {
    let dir = dev_dir(kind)?;
    let running = read_pid(&dir, kind.program)?.is_some_and(|pid| is_running(pid, kind.program));
    if !running {
        bail!(
            "no {} server is running; start one with `cargo xtask {}`",
            kind.label,
            kind.command
        );
    }
    let path = dir.join("env");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    print!("{text}");
    Ok(())
}

/// `cargo xtask <command> --stop`: stops the developer server, if one runs.
pub(crate) fn stop_dev(kind: &Kind) -> Result<()> {
    let dir = dev_dir(kind)?;
    if stop_dir(&dir, kind.program)? {
        eprintln!("xtask: stopped the {} server", kind.label);
    } else {
        eprintln!("xtask: no {} server was running", kind.label);
    }
    Ok(())
}

/// Starts the server of `kind` with fresh state in `dir`; `detached` puts it in its own
/// process group so it outlives this process and ignores the terminal's interrupt.
fn start(kind: &Kind, installed: &Path, dir: &Path, detached: bool) -> Result<Server> {
    stop_dir(dir, kind.program)?;
    install::create_dir(dir)?;
    for sub in kind.state_dirs {
        let path = dir.join(sub);
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("cannot wipe {}", path.display()))?;
        }
        install::create_dir(&path)?;
    }
    let Launch {
        mut command,
        port,
        env,
        setup,
    } = (kind.prepare)(installed, dir)?;

    let log_path = dir.join(format!("{}.log", kind.program));
    let log =
        File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let log_err = log.try_clone().context("cannot duplicate the log file")?;
    command
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
        .with_context(|| format!("cannot start {}", cmd::display(&command)))?;
    let pid = child.id();
    let pid_path = dir.join(format!("{}.pid", kind.program));
    std::fs::write(&pid_path, format!("{pid}\n"))
        .with_context(|| format!("cannot write {}", pid_path.display()))?;

    let ready = wait_ready(&mut child, kind.program, port)
        .and_then(|()| setup.map_or(Ok(()), |setup| setup(port)));
    if let Err(err) = ready {
        let _ = stop_dir(dir, kind.program);
        let _ = child.wait();
        bail!(
            "{err:#}\n--- last lines of {} ---\n{}",
            log_path.display(),
            log_tail(&log_path, 30)
        );
    }
    let startup = started.elapsed();

    let env_path = dir.join("env");
    std::fs::write(&env_path, export_lines(&env))
        .with_context(|| format!("cannot write {}", env_path.display()))?;
    Ok(Server {
        label: kind.label,
        program: kind.program,
        dir: dir.to_path_buf(),
        pid,
        child: (!detached).then_some(child),
        port,
        env,
        startup,
    })
}

/// Renders `export NAME='value'` lines, quoted for POSIX shells.
pub(crate) fn export_lines(env: &[(String, String)]) -> String {
    env.iter()
        .map(|(name, value)| format!("export {name}='{}'\n", value.replace('\'', r"'\''")))
        .collect()
}

/// Waits until the port answers HTTP, the process exits, or the timeout passes.
fn wait_ready(child: &mut Child, program: &str, port: u16) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child
            .try_wait()
            .with_context(|| format!("cannot poll {program}"))?
        {
            bail!("{program} exited during start-up ({status})");
        }
        if answers_http(port) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{program} did not answer HTTP on 127.0.0.1:{port} within {} s",
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

/// Sends one raw HTTP/1.1 request (which should say `Connection: close`) to the loopback
/// `port` and returns the response's status code and the whole response as text.
pub(crate) fn http_request(port: u16, request: &[u8]) -> Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))
        .with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    stream
        .write_all(request)
        .with_context(|| format!("cannot send a request to {addr}"))?;
    let mut response = Vec::new();
    // A server that keeps the connection open ends the read with a timeout; what came so far
    // counts.
    if let Err(err) = stream.read_to_end(&mut response)
        && response.is_empty()
    {
        return Err(err).with_context(|| format!("no response from {addr}"));
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .strip_prefix("HTTP/")
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP response from {addr}: {text:.80}"))?;
    Ok((status, text))
}

/// `N` distinct loopback ports that were free a moment ago.
pub(crate) fn free_ports<const N: usize>() -> Result<[u16; N]> {
    // Hold all listeners at once so the kernel cannot hand out the same port twice.
    let listeners = (0..N)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("cannot find a free port"))
        .collect::<Result<Vec<_>>>()?;
    let mut ports = [0u16; N];
    for (port, listener) in ports.iter_mut().zip(&listeners) {
        *port = listener.local_addr()?.port();
    }
    Ok(ports)
}

/// `bytes` random bytes from the kernel, as lowercase hex.
pub(crate) fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("cannot read /dev/urandom")?;
    Ok(buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

fn read_pid(dir: &Path, program: &str) -> Result<Option<u32>> {
    let path = dir.join(format!("{program}.pid"));
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().parse().ok()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Tells whether `pid` is a live (not zombie) process whose command line names `program`;
/// guards against signalling an unrelated process that reused the pid.
fn is_running(pid: u32, program: &str) -> bool {
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
        .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains(program))
}

/// Stops the server whose pid file is in `dir` (SIGTERM, then SIGKILL after a while) and
/// removes its pid and env files. Returns whether a server was running.
fn stop_dir(dir: &Path, program: &str) -> Result<bool> {
    let Some(pid) = read_pid(dir, program)? else {
        return Ok(false);
    };
    let was_running = is_running(pid, program);
    if was_running {
        signal(pid, program, "TERM")?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while is_running(pid, program) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if is_running(pid, program) {
            eprintln!("xtask: {program} (pid {pid}) ignored SIGTERM; sending SIGKILL");
            signal(pid, program, "KILL")?;
        }
    }
    for file in [format!("{program}.pid"), "env".to_owned()] {
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
fn signal(pid: u32, program: &str, name: &str) -> Result<()> {
    let pid = pid.to_string();
    let ok =
        cmd::succeeds(Command::new("sh").args(["-c", "kill -s \"$1\" \"$2\"", "sh", name, &pid]));
    if !ok {
        bail!("cannot send SIG{name} to {program} (pid {pid})");
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
        let [a, b, c] = free_ports::<3>()?;
        assert!(a != b && b != c && a != c);
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
    fn http_request_returns_the_status() -> Result<()> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        let server = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
            let (mut conn, _) = listener.accept()?;
            let mut buf = [0u8; 256];
            let n = conn.read(&mut buf)?;
            conn.write_all(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok")?;
            Ok(buf[..n].to_vec())
        });
        let (status, text) = http_request(port, b"PUT /x HTTP/1.1\r\nConnection: close\r\n\r\n")?;
        assert_eq!(status, 201);
        assert!(text.ends_with("\r\n\r\nok"), "{text}");
        let sent = server
            .join()
            .map_err(|_| anyhow::anyhow!("server thread panicked"))??;
        assert!(sent.starts_with(b"PUT /x "));
        Ok(())
    }

    #[test]
    fn a_missing_pid_file_means_nothing_to_stop() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("xtask-server-test-{}", std::process::id()));
        install::create_dir(&dir)?;
        assert!(!stop_dir(&dir, "garage")?);
        // A pid file naming a process that is not garage (this test) is not signalled.
        std::fs::write(dir.join("garage.pid"), format!("{}\n", std::process::id()))?;
        assert!(!stop_dir(&dir, "garage")?);
        assert!(!dir.join("garage.pid").exists());
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
