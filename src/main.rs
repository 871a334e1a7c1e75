//! The `herald` binary: all behaviour lives in the library.
fn main() -> std::process::ExitCode {
    herald::cli::main()
}
