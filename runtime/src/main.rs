//! The `amesh` command line; see [`amesh_runtime::cli`].
#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    amesh_runtime::cli::main()
}
