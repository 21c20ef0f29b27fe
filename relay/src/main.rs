//! Run with `cargo run -p hsq-relay -- serve`. (Built in the relay issue; a skeleton until then.)
fn main() {
    eprintln!("hsq-relay: not built yet");
    std::process::exit(2);
}
