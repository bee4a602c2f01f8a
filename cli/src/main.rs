//! The `shmkit` command line: list, inspect, remove and collect shmkit segments in
//! `/dev/shm`, and `shmkit demo`, the shared-counter race and its fixes.
//!
//! Run `shmkit --help` for the commands.

mod demo;
mod demo_dict;
mod inspect;
mod report;
mod segments;
mod together;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Exit codes, the same for every command (shown at the end of every `--help`).
const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  refused or failed: a segment still mapped by a live process, a system call that failed
  2  usage error or bad segment: bad arguments, or a name that is missing, not a shmkit
     segment (foreign, empty or special file) or corrupt";

/// Shared memory for multi-process Rust: inspect and clean up /dev/shm, or watch the
/// counter race.
#[derive(Parser, Debug)]
#[command(name = "shmkit", version, after_help = EXIT_CODES, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The counter race: lost updates, and the robust Mutex and atomic that fix them
    ///
    /// P processes x N increments on one shared counter three ways (unsynchronized, under a
    /// robust Mutex, with an atomic fetch_add), then P x min(N, 1M) updates of one SharedDict
    /// key (get + insert, and update()).
    #[command(after_help = EXIT_CODES)]
    Demo(demo::DemoArgs),
    /// List the shmkit segments in /dev/shm
    ///
    /// Kind, element type, length, size, creator pid, creation time, and whether a live
    /// process maps it (mapped) or none does (stale: `shmkit gc` removes it).
    #[command(after_help = EXIT_CODES)]
    Ls(segments::LsArgs),
    /// Show a segment's header and a summary of its contents
    ///
    /// The full header, and by kind: first elements, min/max and claims of an array; the
    /// value of a value or atomic; capacity and length of a queue, dict or list.
    #[command(after_help = EXIT_CODES)]
    Inspect(inspect::InspectArgs),
    /// Remove segments
    ///
    /// Refuses one still mapped by a live process (exit 1), and any file that is not a shmkit
    /// segment (foreign, empty, FIFO, socket, symlink: exit 2), unless --force. Never removes
    /// a directory. With several names, the exit code is the worst of theirs.
    #[command(after_help = EXIT_CODES)]
    Rm(segments::RmArgs),
    /// Remove the stale shmkit segments (mapped by no process)
    ///
    /// Exactly those: files of other programs and segments a live process maps are left
    /// alone. Says which it removed.
    #[command(after_help = EXIT_CODES)]
    Gc(segments::GcArgs),
    /// Print a shell completion script
    ///
    /// For example: shmkit completions bash > ~/.local/share/bash-completion/completions/shmkit
    #[command(after_help = EXIT_CODES)]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// What went wrong in a command; its exit code is one of [`EXIT_CODES`].
#[derive(Debug)]
pub enum CliError {
    /// Refused or failed (exit code 1).
    Failed(String),
    /// A bad segment: missing, not a shmkit segment, corrupt (exit code 2).
    Bad(String),
    /// Reported already (on stdout as JSON, on stderr line by line): only the exit code.
    Reported(u8),
}

impl CliError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Failed(_) => 1,
            CliError::Bad(_) => 2,
            CliError::Reported(code) => *code,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Failed(m) | CliError::Bad(m) => f.write_str(m),
            CliError::Reported(code) => write!(f, "exit code {code}"),
        }
    }
}

impl From<shmkit::SegmentError> for CliError {
    fn from(e: shmkit::SegmentError) -> Self {
        match segments::exit_code(&e) {
            2 => CliError::Bad(e.to_string()),
            _ => CliError::Failed(e.to_string()),
        }
    }
}

macro_rules! failed_from {
    ($($t:ty),*) => {$(
        impl From<$t> for CliError {
            fn from(e: $t) -> Self {
                CliError::Failed(e.to_string())
            }
        }
    )*};
}
failed_from!(shmkit::ManagerError, shmkit::LockError, shmkit::process::ProcessError, std::io::Error);

/// `s` with control characters escaped: one line, and no terminal escape sequences from
/// bytes a hostile file put in a message.
pub fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Ls(args) => segments::ls(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Rm(args) => segments::rm(&args),
        Command::Gc(args) => segments::gc(&args),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "shmkit", &mut std::io::stdout());
            Ok(())
        }
    };
    let _ = std::io::stdout().flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if !matches!(e, CliError::Reported(_)) {
                eprintln!("shmkit: {}", printable(&e.to_string()));
            }
            ExitCode::from(e.exit_code())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
