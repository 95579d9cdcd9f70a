//! The `quarantine` binary: parses the command line and turns the library's `Result` into an exit code
//! (0 success, 2 error with a message on stderr).
use clap::Parser;

fn main() {
    let cli = quarantine::cli::Cli::parse();
    if let Err(e) = quarantine::cli::run(cli) {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}
