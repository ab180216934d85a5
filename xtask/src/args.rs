//! A small command-line parser: flags, `--name value` / `--name=value` options, positionals,
//! and everything after `--` kept apart.

use std::str::FromStr;

use anyhow::{Context, Result, bail};

/// The arguments not yet consumed, in order, and those after a `--`.
pub(crate) struct Args {
    rest: Vec<String>,
    after_double_dash: Vec<String>,
}

impl Args {
    /// Collects the process arguments (without the program name).
    pub(crate) fn from_env() -> Self {
        Self::new(std::env::args().skip(1))
    }

    /// Builds the parser over `args`; everything after the first `--` is kept apart.
    pub(crate) fn new(args: impl IntoIterator<Item = String>) -> Self {
        let mut rest = Vec::new();
        let mut after_double_dash = Vec::new();
        let mut seen_double_dash = false;
        for arg in args {
            if seen_double_dash {
                after_double_dash.push(arg);
            } else if arg == "--" {
                seen_double_dash = true;
            } else {
                rest.push(arg);
            }
        }
        Self {
            rest,
            after_double_dash,
        }
    }

    /// Removes every occurrence of the flag `name` and tells whether there was one.
    pub(crate) fn flag(&mut self, name: &str) -> bool {
        let before = self.rest.len();
        self.rest.retain(|arg| arg != name);
        self.rest.len() != before
    }

    /// Removes the option `name` (`--name value` or `--name=value`) and returns its value.
    pub(crate) fn value(&mut self, name: &str) -> Result<Option<String>> {
        let prefix = format!("{name}=");
        let Some(index) = self
            .rest
            .iter()
            .position(|arg| arg == name || arg.starts_with(&prefix))
        else {
            return Ok(None);
        };
        let arg = self.rest.remove(index);
        if let Some(value) = arg.strip_prefix(&prefix) {
            return Ok(Some(value.to_owned()));
        }
        if index >= self.rest.len() {
            bail!("option {name} needs a value");
        }
        Ok(Some(self.rest.remove(index)))
    }

    /// Like [`Args::value`], parsed into `T`.
    pub(crate) fn value_parsed<T>(&mut self, name: &str) -> Result<Option<T>>
    where
        T: FromStr,
        T::Err: std::error::Error + Send + Sync + 'static,
    {
        match self.value(name)? {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .with_context(|| format!("option {name}: cannot parse `{text}`")),
        }
    }

    /// Removes and returns the first argument that does not start with `-`.
    pub(crate) fn next_positional(&mut self) -> Option<String> {
        let index = self.rest.iter().position(|arg| !arg.starts_with('-'))?;
        Some(self.rest.remove(index))
    }

    /// Returns the arguments that followed `--`.
    pub(crate) fn take_after_double_dash(&mut self) -> Vec<String> {
        std::mem::take(&mut self.after_double_dash)
    }

    /// Fails when arguments remain that no one consumed.
    pub(crate) fn finish(self) -> Result<()> {
        if !self.rest.is_empty() {
            bail!("unexpected arguments: {}", self.rest.join(" "));
        }
        if !self.after_double_dash.is_empty() {
            bail!(
                "this command takes no arguments after `--`: {}",
                self.after_double_dash.join(" ")
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::new(list.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn flags_values_and_positionals_are_taken_in_any_order() -> Result<()> {
        let mut a = args(&["--smoke", "name_parse", "--time", "5"]);
        assert!(a.flag("--smoke"));
        assert!(!a.flag("--smoke"));
        assert_eq!(a.value_parsed::<u64>("--time")?, Some(5));
        assert_eq!(a.next_positional().as_deref(), Some("name_parse"));
        assert_eq!(a.next_positional(), None);
        a.finish()
    }

    #[test]
    fn equals_form_and_double_dash_are_supported() -> Result<()> {
        let mut a = args(&["--cases=7", "x", "--", "--bench", "y"]);
        assert_eq!(a.value("--cases")?.as_deref(), Some("7"));
        assert_eq!(a.next_positional().as_deref(), Some("x"));
        assert_eq!(a.take_after_double_dash(), vec!["--bench", "y"]);
        a.finish()
    }

    #[test]
    fn leftovers_and_missing_values_are_errors() {
        let mut a = args(&["--time"]);
        assert!(a.value("--time").is_err());
        assert!(args(&["--bogus"]).finish().is_err());
        assert!(args(&["a", "--", "b"]).finish().is_err());
        let mut a = args(&["--cases", "many"]);
        assert!(a.value_parsed::<u32>("--cases").is_err());
    }
}
