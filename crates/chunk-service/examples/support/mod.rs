//! What the benchmarks' measured child processes share: peak RSS, the `result` line they
//! print and the driver parses, and the machine they ran on.

// Each benchmark uses the part it needs.
#![allow(dead_code)]

use std::error::Error;
use std::num::NonZeroUsize;
use std::path::PathBuf;

type BoxResult<T> = Result<T, Box<dyn Error>>;

/// `VmHWM` of this process in KiB.
pub(crate) fn peak_rss_kib() -> BoxResult<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .ok_or_else(|| "no VmHWM in /proc/self/status".into())
}

/// The `result key=value …` line a child printed, without its `result ` prefix.
pub(crate) fn result_line(stdout: &str) -> BoxResult<&str> {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix("result "))
        .ok_or_else(|| format!("child printed no result: {stdout:?}").into())
}

/// The value of `key` in a result line.
pub(crate) fn result_field(line: &str, key: &str) -> BoxResult<u64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .ok_or_else(|| format!("no {key} in {line:?}"))?
        .parse::<u64>()
        .map_err(|e| format!("{key} in {line:?}: {e}").into())
}

/// The CPU model, from `/proc/cpuinfo`.
pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == "model name").then(|| value.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".to_owned())
}

/// Cores this process may run on.
pub(crate) fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// The default data directory of benchmark `name`: `target/NAME` next to this executable's
/// profile directory (the temp directory if it is not run from `target/*/examples`).
pub(crate) fn default_data_dir(name: &str) -> PathBuf {
    let exe = std::env::current_exe().ok();
    let target = exe.as_deref().and_then(|exe| {
        let examples = exe.parent()?;
        (examples.file_name()? == "examples").then_some(())?;
        Some(examples.parent()?.parent()?.to_path_buf())
    });
    target.unwrap_or_else(std::env::temp_dir).join(name)
}
