//! What `cargo metadata --no-deps` says about packages: their targets and features.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::cmd;

/// One package of a workspace, as far as the xtask needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Package {
    /// The package name (`-p` argument).
    pub(crate) name: String,
    /// Its build targets.
    pub(crate) targets: Vec<Target>,
    /// The names of the features it declares.
    pub(crate) features: Vec<String>,
}

/// One build target of a package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    /// The target name (`--bench`, `--bin`, `--example` argument).
    pub(crate) name: String,
    /// Its kinds: `lib`, `bin`, `bench`, `example`, `test`, ...
    pub(crate) kinds: Vec<String>,
}

impl Target {
    /// Tells whether the target is of kind `kind`.
    pub(crate) fn is(&self, kind: &str) -> bool {
        self.kinds.iter().any(|k| k == kind)
    }
}

/// Returns the packages of the workspace whose manifest is `manifest_path`.
pub(crate) fn packages(manifest_path: &Path) -> Result<Vec<Package>> {
    let json = cmd::output(
        cmd::cargo()
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--manifest-path",
            ])
            .arg(manifest_path),
    )?;
    parse(&json).with_context(|| {
        format!(
            "cannot read `cargo metadata` for {}",
            manifest_path.display()
        )
    })
}

/// Parses the JSON printed by `cargo metadata --format-version 1`.
pub(crate) fn parse(json: &str) -> Result<Vec<Package>> {
    let root: Value = serde_json::from_str(json).context("not JSON")?;
    let packages = root
        .get("packages")
        .and_then(Value::as_array)
        .context("no `packages` array")?;
    packages.iter().map(parse_package).collect()
}

fn parse_package(package: &Value) -> Result<Package> {
    let name = str_field(package, "name")?;
    let targets = package
        .get("targets")
        .and_then(Value::as_array)
        .with_context(|| format!("package {name}: no `targets` array"))?
        .iter()
        .map(|target| {
            Ok(Target {
                name: str_field(target, "name")?,
                kinds: target
                    .get("kind")
                    .and_then(Value::as_array)
                    .with_context(|| format!("package {name}: target without `kind`"))?
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            })
        })
        .collect::<Result<_>>()?;
    let features = package
        .get("features")
        .and_then(Value::as_object)
        .map(|map| map.keys().cloned().collect())
        .unwrap_or_default();
    Ok(Package {
        name,
        targets,
        features,
    })
}

fn str_field(value: &Value, field: &str) -> Result<String> {
    value
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("missing string field `{field}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_targets_and_features() -> Result<()> {
        let json = r#"{"packages":[
            {"name":"chunk-format","features":{"default":[],"libopus":[]},
             "targets":[{"name":"chunk_format","kind":["lib"]},
                        {"name":"names","kind":["bench"]}]},
            {"name":"chunk-cli","features":{},
             "targets":[{"name":"bench-merge","kind":["example"]}]}
        ],"workspace_members":[]}"#;
        let packages = parse(json)?;
        assert_eq!(packages.len(), 2);
        assert_eq!(packages[0].name, "chunk-format");
        assert!(packages[0].features.iter().any(|f| f == "libopus"));
        assert!(packages[0].targets[1].is("bench"));
        assert!(!packages[0].targets[1].is("lib"));
        assert_eq!(packages[1].targets[0].name, "bench-merge");
        Ok(())
    }

    #[test]
    fn rejects_malformed_metadata() {
        assert!(parse("not json").is_err());
        assert!(parse(r#"{"packages":[{"targets":[]}]}"#).is_err());
        assert!(parse(r#"{"nothing":1}"#).is_err());
    }

    #[test]
    fn reads_this_workspace() -> Result<()> {
        let root = crate::workspace_root()?;
        let packages = packages(&root.join("Cargo.toml"))?;
        let xtask = packages
            .iter()
            .find(|p| p.name == "xtask")
            .context("xtask missing from the workspace")?;
        assert!(
            xtask
                .targets
                .iter()
                .any(|t| t.name == "xtask" && t.is("bin"))
        );
        Ok(())
    }
}
