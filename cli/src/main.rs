//! The `shmkit` command line: `shmkit demo` shows the shared-counter race and its fixes.
//!
//! Run `shmkit help` for the commands.

mod args;
mod demo;
mod demo_dict;
mod inspect;
mod json;
mod segments;
mod together;

use args::Args;

const HELP: &str = "\
shmkit — shared memory for multi-process Rust

USAGE:
    shmkit demo [--processes P] [--increments N] [--json]
        P processes x N increments on one shared counter: unsynchronized (lost updates),
        under a robust Mutex, and with an atomic fetch_add; then P processes x min(N, 1M)
        updates of one SharedDict key: get + insert (lost updates) and update() (exact).
    shmkit ls [--all] [--json]
        Every shmkit segment in /dev/shm: kind, element type, length, bytes, creator, whether
        any live process maps it. --all lists foreign files too.
    shmkit inspect [--json] NAME
        The full header and a per-kind summary (first elements, min/max, claims, value).
    shmkit rm [--force] [--json] NAME...
        Remove segments; refuses one still mapped by a live process, and any file that is
        not a shmkit segment (foreign, empty, FIFO, socket, symlink), unless --force.
    shmkit gc [--dry-run] [--json]
        Remove exactly the stale shmkit segments (mapped by no process) and say which.
    shmkit help

Exit codes: 0 success, 1 operation failed, 2 bad arguments or a bad segment.
";

/// Run the command line; returns the process exit code (0 ok, 1 failure, 2 usage or bad input).
pub fn run(argv: Vec<String>) -> i32 {
    let mut args = Args::new(argv);
    let Some(cmd) = args.next_positional() else {
        eprint!("{HELP}");
        return 2;
    };
    let result = match cmd.as_str() {
        "demo" => demo::run(args),
        "ls" => segments::ls(args),
        "inspect" => inspect::run(args),
        "rm" => segments::rm(args),
        "gc" => segments::gc(args),
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        other => Err(CliError::Usage(format!("unknown command {other:?}; see `shmkit help`"))),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("shmkit: {}", printable(&e.to_string()));
            e.exit_code()
        }
    }
}

/// `s` with control characters escaped: one line, and no terminal escape sequences from
/// bytes a hostile file put in a message.
pub fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

/// What went wrong in a subcommand.
#[derive(Debug)]
pub enum CliError {
    /// Bad arguments or bad input (exit code 2).
    Usage(String),
    /// The operation failed (exit code 1).
    Failed(String),
}

impl CliError {
    fn exit_code(&self) -> i32 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failed(_) => 1,
        }
    }
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Failed(m) => f.write_str(m),
        }
    }
}

impl<E: std::error::Error> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError::Failed(e.to_string())
    }
}

fn main() {
    std::process::exit(run(std::env::args().skip(1).collect()));
}
