//! The `quarantine` binary: parses the command line and turns the library's `Result` into an exit code
//! (0 success, 2 error with a message on stderr, 130 after Ctrl-C with the state saved).
use clap::Parser;

fn main() {
    let cli = quarantine::cli::Cli::parse();
    quarantine::interrupt::install();
    if let Err(e) = quarantine::cli::run(cli) {
        let interrupted = e.chain().any(|c| matches!(c.downcast_ref::<quarantine::Error>(), Some(quarantine::Error::Interrupted(_))));
        eprintln!("error: {e:#}");
        std::process::exit(if interrupted { 130 } else { 2 });
    }
}
