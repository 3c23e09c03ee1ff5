//! Link options for the release `amesh` binary (README, "Build time and
//! size"), on x86_64 Linux where Rust links with its bundled LLD:
//! - `--icf=all` folds functions whose machine code is identical (drop
//!   glue and generic instances of different types often are); Rust makes
//!   no promise that distinct functions have distinct addresses.
//! - `-z pack-relative-relocs` stores the position-independent binary's
//!   relocations as RELR (glibc 2.36+, Debian 12), a fraction of the size
//!   of `.rela.dyn`, keeping ASLR.
//!
//! Debug builds (the tests' binary) link as before: faster links matter
//! more there than size.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = std::env::var("TARGET").unwrap_or_default();
    let profile = std::env::var("PROFILE").unwrap_or_default();
    if target == "x86_64-unknown-linux-gnu" && profile == "release" {
        println!("cargo:rustc-link-arg-bins=-Wl,--icf=all");
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
