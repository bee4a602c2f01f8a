//! The `shmkit` command line: `shmkit demo` shows the shared-counter race and its fixes.
//!
//! Run `shmkit help` for the commands.

mod cli;

fn main() {
    std::process::exit(cli::run(std::env::args().skip(1).collect()));
}
