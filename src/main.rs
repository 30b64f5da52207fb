//! The `imapshift` binary: everything lives in the library; see `cli`.

fn main() {
    std::process::exit(imapshift::cli::main());
}
