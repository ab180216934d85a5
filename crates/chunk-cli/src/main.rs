//! The `chunkvault` command line. Subcommands arrive with the CLI issue.

fn main() {
    eprintln!("chunkvault: the command line is not built yet (see the CLI issue)");
    std::process::exit(2);
}
