//! The `amesh` binary of this workspace, for tests that run it as an
//! operator would (`amesh config check`, `amesh run`, the compose stack's
//! commands). Built once per test process with `cargo build -p
//! amesh-runtime --bin amesh` (a no-op when up to date), so a test never
//! runs a stale binary.

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
        let root = workspace_root();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(&root)
            .args(["build", "-q", "-p", "amesh-runtime", "--bin", "amesh"])
            .output()
            .expect("running cargo build");
        assert!(
            out.status.success(),
            "cargo build -p amesh-runtime --bin amesh failed:\n{}",
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
