//! The `bastion` binary: a thin shell over the library's CLI.

fn main() -> std::process::ExitCode {
    bastion::cli::main()
}
