//! The `amesh` binary of this workspace, for tests that run it as an
//! operator would (`amesh config check`, `amesh run`, the compose stack's
//! commands). Built once per test process with `cargo build -p amesh-tests
//! -p amesh-runtime --bin amesh` (a no-op when up to date), so a test never
//! runs a stale binary. Selecting `amesh-tests` too resolves dependency
//! features as `cargo test -p amesh-tests` does, so the two builds share
//! their artifacts instead of rebuilding each other's. `AMESH_BIN` names a
//! binary to use instead.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (the parent of `tests/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of the freshly built `amesh` debug binary. Panics with cargo's
/// output when the build fails.
pub fn amesh() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("AMESH_BIN") {
            return PathBuf::from(bin);
        }
        let root = workspace_root();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        // Without the variables cargo sets for a running test (package
        // metadata, the test's library path): the build would see them as
        // changes and rebuild, and the next `cargo test` would rebuild back.
        for (name, _) in std::env::vars_os() {
            let name = name.to_string_lossy();
            let set_for_tests = name.starts_with("CARGO_PKG_")
                || name.starts_with("CARGO_BIN_EXE_")
                || matches!(
                    &*name,
                    "CARGO_MANIFEST_DIR"
                        | "CARGO_MANIFEST_PATH"
                        | "CARGO_CRATE_NAME"
                        | "CARGO_PRIMARY_PACKAGE"
                        | "CARGO_TARGET_TMPDIR"
                        | "CARGO_RUSTC_CURRENT_DIR"
                        | "OUT_DIR"
                        | "LD_LIBRARY_PATH"
                );
            if set_for_tests {
                cmd.env_remove(&*name);
            }
        }
        let out = cmd
            .current_dir(&root)
            .args(["build", "-q", "-p", "amesh-tests", "-p", "amesh-runtime"])
            .args(["--bin", "amesh"])
            .output()
            .expect("running cargo build");
        assert!(
            out.status.success(),
            "cargo build -p amesh-tests -p amesh-runtime --bin amesh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let bin = target.join("debug").join("amesh");
        assert!(bin.is_file(), "{} missing after the build", bin.display());
        bin
    })
    .clone()
}
