//! chunkvault's task runner (placeholder until the xtask lands).

fn main() {
    eprintln!("xtask: not built yet");
    std::process::exit(2);
}
