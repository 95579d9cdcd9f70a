//! The `quarantine` binary: parses the command line and turns the library's `Result` into an exit code
//! (0 success, 2 error with a message on stderr, 130 after Ctrl-C with the state saved). The
//! command-line interface (`cli/`) lives here, not in the library: the library does not depend on
//! clap.
use clap::Parser;

mod cli;

fn main() {
    let cli = cli::Cli::parse();
    quarantine::interrupt::install();
    if let Err(e) = cli::run(cli) {
        let interrupted =
            e.chain().any(|c| matches!(c.downcast_ref::<quarantine::Error>(), Some(quarantine::Error::Interrupted(_))));
        eprintln!("error: {e:#}");
        if let Some(h) = cli::hint(&e) {
            eprintln!("hint: {h}");
        }
        std::process::exit(if interrupted { 130 } else { 2 });
    }
}
