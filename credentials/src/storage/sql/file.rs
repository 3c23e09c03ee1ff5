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
