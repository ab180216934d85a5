//! `cargo xtask bench`: the workspace's benchmarks, found through `cargo metadata`.
//!
//! A benchmark is a `[[bench]]` target (run with `cargo bench`), or a `[[bin]]` / `[[example]]`
//! target named `bench-NAME` (run with `cargo run --release`), for measurements that need a
//! whole process of their own, such as peak RSS.

use std::fmt;
use std::process::Command;

use anyhow::{Result, bail};

use crate::metadata::Package;
use crate::{cmd, metadata};

/// The prefix that marks a binary or example target as a benchmark.
const BINARY_PREFIX: &str = "bench-";

/// How a benchmark is built and run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A `[[bench]]` target.
    Bench,
    /// A `[[bin]]` named `bench-NAME`.
    Bin,
    /// An `[[example]]` named `bench-NAME`.
    Example,
}

/// One benchmark of the workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Benchmark {
    package: String,
    /// The name a user selects it by (without the `bench-` prefix).
    name: String,
    /// The cargo target name.
    target: String,
    kind: Kind,
}

impl fmt::Display for Benchmark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Bench => "bench",
            Kind::Bin => "bin",
            Kind::Example => "example",
        };
        write!(
            f,
            "{} ({} {} in {})",
            self.name, kind, self.target, self.package
        )
    }
}

impl Benchmark {
    /// The cargo command that runs it, with `args` for the benchmark binary.
    fn command(&self, args: &[String]) -> Command {
        let mut command = cmd::cargo();
        match self.kind {
            Kind::Bench => {
                command.args(["bench", "-p", &self.package, "--bench", &self.target]);
            }
            Kind::Bin | Kind::Example => {
                let flag = if self.kind == Kind::Bin {
                    "--bin"
                } else {
                    "--example"
                };
                command.args(["run", "--release", "-p", &self.package, flag, &self.target]);
            }
        }
        if !args.is_empty() {
            command.arg("--").args(args);
        }
        command
    }
}

/// Every benchmark the packages declare, sorted by name then package.
fn discover(packages: &[Package]) -> Vec<Benchmark> {
    let mut found = Vec::new();
    for package in packages {
        for target in &package.targets {
            let kind = if target.is("bench") {
                Some((Kind::Bench, target.name.as_str()))
            } else if let Some(name) = target.name.strip_prefix(BINARY_PREFIX) {
                if target.is("bin") {
                    Some((Kind::Bin, name))
                } else if target.is("example") {
                    Some((Kind::Example, name))
                } else {
                    None
                }
            } else {
                None
            };
            if let Some((kind, name)) = kind {
                found.push(Benchmark {
                    package: package.name.clone(),
                    name: name.to_owned(),
                    target: target.name.clone(),
                    kind,
                });
            }
        }
    }
    found.sort_by(|a, b| (&a.name, &a.package).cmp(&(&b.name, &b.package)));
    found
}

/// Picks the benchmarks named `name` (all of them without a name).
fn select(all: Vec<Benchmark>, name: Option<&str>) -> Result<Vec<Benchmark>> {
    let Some(name) = name else {
        return Ok(all);
    };
    let known: Vec<String> = all.iter().map(ToString::to_string).collect();
    let chosen: Vec<Benchmark> = all.into_iter().filter(|b| b.name == name).collect();
    if chosen.is_empty() {
        if known.is_empty() {
            bail!("no benchmark `{name}`: the workspace declares no benchmarks yet");
        }
        bail!(
            "no benchmark `{name}`; known benchmarks:\n  {}",
            known.join("\n  ")
        );
    }
    Ok(chosen)
}

/// Runs the benchmark `name` (or every benchmark), passing `args` to the benchmark binary.
pub(crate) fn run(name: Option<&str>, args: &[String]) -> Result<()> {
    let root = crate::workspace_root()?;
    let packages = metadata::packages(&root.join("Cargo.toml"))?;
    let chosen = select(discover(&packages), name)?;
    if chosen.is_empty() {
        eprintln!("xtask: the workspace declares no benchmarks yet");
        return Ok(());
    }
    for benchmark in &chosen {
        eprintln!("xtask: benchmark {benchmark}");
        cmd::run(benchmark.command(args).current_dir(&root))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Target;

    fn package(name: &str, targets: &[(&str, &str)]) -> Package {
        Package {
            name: name.to_owned(),
            targets: targets
                .iter()
                .map(|(name, kind)| Target {
                    name: (*name).to_owned(),
                    kinds: vec![(*kind).to_owned()],
                })
                .collect(),
            features: Vec::new(),
        }
    }

    fn workspace() -> Vec<Package> {
        vec![
            package(
                "chunk-crypto",
                &[("chunk_crypto", "lib"), ("seal", "bench"), ("util", "test")],
            ),
            package(
                "chunk-cli",
                &[
                    ("chunkvault", "bin"),
                    ("bench-merge", "example"),
                    ("bench-rss", "bin"),
                    ("bench-x", "test"),
                ],
            ),
        ]
    }

    #[test]
    fn finds_bench_targets_and_bench_prefixed_binaries() {
        let found = discover(&workspace());
        let names: Vec<(&str, Kind)> = found.iter().map(|b| (b.name.as_str(), b.kind)).collect();
        assert_eq!(
            names,
            vec![
                ("merge", Kind::Example),
                ("rss", Kind::Bin),
                ("seal", Kind::Bench)
            ]
        );
    }

    #[test]
    fn commands_follow_the_kind() {
        let found = discover(&workspace());
        let args = vec!["--quick".to_owned()];
        let lines: Vec<String> = found
            .iter()
            .map(|b| cmd::display(&b.command(&args)))
            .collect();
        assert_eq!(
            lines,
            vec![
                "cargo run --release -p chunk-cli --example bench-merge -- --quick",
                "cargo run --release -p chunk-cli --bin bench-rss -- --quick",
                "cargo bench -p chunk-crypto --bench seal -- --quick",
            ]
            .into_iter()
            .map(|line| line.replace("cargo ", &format!("{} ", cargo_name())))
            .collect::<Vec<_>>()
        );
        assert_eq!(
            cmd::display(&found[2].command(&[])),
            format!("{} bench -p chunk-crypto --bench seal", cargo_name())
        );
    }

    fn cargo_name() -> String {
        cmd::display(&cmd::cargo())
    }

    #[test]
    fn selection_by_name_and_unknown_names() -> Result<()> {
        let all = discover(&workspace());
        assert_eq!(select(all.clone(), None)?.len(), 3);
        let seal = select(all.clone(), Some("seal"))?;
        assert_eq!(seal.len(), 1);
        assert_eq!(seal[0].package, "chunk-crypto");
        let message = select(all, Some("nope"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(message.contains("known benchmarks"), "{message}");
        assert!(message.contains("merge (example bench-merge in chunk-cli)"));
        assert!(select(Vec::new(), Some("x")).is_err());
        Ok(())
    }
}
