//! What the browser tests share: where chromium and playwright-core are,
//! and the rule for a missing one (skipped with a note, a failure under
//! `CI=true`).

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Whether this is a CI run (`CI=true`).
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// A prerequisite is missing: fail under CI, skip with a note elsewhere.
pub fn missing(what: &str) -> bool {
    assert!(
        !ci(),
        "{what} is missing; under CI=true the browser tests must run (scripts/test installs it)"
    );
    eprintln!("SKIPPED: {what} is missing (scripts/test installs it)");
    true
}

/// Debian's chromium, or `AMESH_CHROMIUM`.
pub fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AMESH_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Where npm put playwright-core (and axe-core): `PLAYWRIGHT_CORE_DIR`,
/// else `target/browser` as `scripts/test` installs them.
pub fn playwright_dir() -> PathBuf {
    std::env::var_os("PLAYWRIGHT_CORE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/browser"))
}

/// Where the scenarios leave their screenshots (created).
pub fn screenshots_dir() -> PathBuf {
    let shots = repo().join("target/browser-screenshots");
    std::fs::create_dir_all(&shots).expect("screenshot directory");
    shots
}

/// `node` running the playwright scenario `script` (a path from the
/// workspace root) against the gateway at `gateway_url`; the caller adds
/// what else the script reads and spawns it.
pub fn scenario(
    script: &str,
    gateway_url: &str,
    chromium: &Path,
    playwright: &Path,
) -> tokio::process::Command {
    let mut node = tokio::process::Command::new("node");
    node.arg(repo().join(script))
        .env("GATEWAY_URL", gateway_url)
        .env("CHROMIUM", chromium)
        .env("PLAYWRIGHT_CORE_DIR", playwright)
        .env("SHOTS_DIR", screenshots_dir())
        .kill_on_drop(true);
    node
}
