//! A tiny argument parser: positionals, `--flag`, `--key value` and `--key=value`.

use super::CliError;

/// Remaining command-line arguments.
pub struct Args {
    rest: Vec<String>,
}

impl Args {
    /// Wrap the arguments after the program name.
    pub fn new(argv: Vec<String>) -> Self {
        Args { rest: argv }
    }

    /// Take the first argument that is not an option.
    pub fn next_positional(&mut self) -> Option<String> {
        let i = self.rest.iter().position(|a| !a.starts_with("--"))?;
        Some(self.rest.remove(i))
    }

    /// Take a boolean `--name`.
    pub fn flag(&mut self, name: &str) -> bool {
        let long = format!("--{name}");
        match self.rest.iter().position(|a| *a == long) {
            Some(i) => {
                self.rest.remove(i);
                true
            }
            None => false,
        }
    }

    /// Take `--name value` or `--name=value`, parsed.
    pub fn value<T: std::str::FromStr>(&mut self, name: &str) -> Result<Option<T>, CliError> {
        let long = format!("--{name}");
        let prefix = format!("--{name}=");
        let raw = if let Some(i) = self.rest.iter().position(|a| *a == long) {
            if i + 1 >= self.rest.len() {
                return Err(CliError::Usage(format!("{long} needs a value")));
            }
            let v = self.rest.remove(i + 1);
            self.rest.remove(i);
            v
        } else if let Some(i) = self.rest.iter().position(|a| a.starts_with(&prefix)) {
            self.rest.remove(i)[prefix.len()..].to_owned()
        } else {
            return Ok(None);
        };
        raw.parse().map(Some).map_err(|_| CliError::Usage(format!("{long}: cannot parse {raw:?}")))
    }

    /// Fail on anything not consumed.
    pub fn finish(self) -> Result<(), CliError> {
        match self.rest.first() {
            None => Ok(()),
            Some(a) => Err(CliError::Usage(format!("unexpected argument {a:?}; see `shmkit help`"))),
        }
    }
}
