//! Noticing that a SQLite file was deleted or moved under a running agent.
//!
//! An open SQLite connection holds the file's inode, not its name: delete
//! or move the file and reads and writes carry on against an inode nobody
//! can open again, and everything written is gone at the next start. So the
//! backend remembers which file it opened (device and inode) and checks the
//! path still names it before each operation — one `stat`, about a
//! microsecond — answering `Unavailable` while it does not. Moving the file
//! back restores service; a *copy* put back is a different file, so the
//! agent must be restarted to use it.
//!
//! The file is also created here, owner-only, before the driver opens it:
//! SQLite would create it with the process umask (usually 0644), and it
//! holds who uses which tool, scopes and the audit trail. SQLite gives the
//! `-wal` and `-shm` files it makes the database file's permissions.

use std::path::PathBuf;

use crate::config::DatabaseUrl;
use crate::error::CredentialError;

pub(crate) struct SqliteFile {
    path: PathBuf,
    id: (u64, u64),
}

impl SqliteFile {
    /// The file at `path` as it is now, if it is a file (not `:memory:`).
    pub(crate) fn opened(path: &str) -> Option<Self> {
        let path = PathBuf::from(path);
        let id = file_id(&path)?;
        Some(Self { path, id })
    }

    pub(crate) fn check(&self, url: &DatabaseUrl) -> Result<(), CredentialError> {
        match file_id(&self.path) {
            Some(id) if id == self.id => Ok(()),
            found => Err(CredentialError::Unavailable {
                backend: url.backend_name(),
                target: url.target().to_owned(),
                detail: if found.is_some() {
                    "the database file was replaced while the agent was running; restart the agent to use the new file".into()
                } else {
                    "the database file was deleted or moved while the agent was running; put it back (or restart the agent with a new one)".into()
                },
            }),
        }
    }
}

/// Creates the missing database file at `path` with mode 0600 so that no
/// umask decides who may read it, and warns about an existing file that
/// group or others can read. Best effort: when the file cannot be made
/// (no such directory, no permission) the driver's open reports why.
pub(crate) fn prepare(path: &std::path::Path) {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => warn_if_shared(path),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "could not pre-create the SQLite file")
        }
    }
}

#[cfg(unix)]
fn warn_if_shared(path: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt as _;
    if let Ok(meta) = std::fs::metadata(path)
        && meta.is_file()
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "the credential database is readable by group or others; chmod 600 it (and its -wal and -shm files)"
        );
    }
}

#[cfg(not(unix))]
fn warn_if_shared(_path: &std::path::Path) {}

#[cfg(unix)]
fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    meta.is_file().then(|| (meta.dev(), meta.ino()))
}

#[cfg(not(unix))]
fn file_id(_path: &std::path::Path) -> Option<(u64, u64)> {
    None
}
