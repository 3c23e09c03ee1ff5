//! Relative file paths in a config file mean "next to this file".
//!
//! `sqlite://data/agent.db` and `agent_secret_file: data/agent.secret`
//! used to be opened relative to wherever `amesh` was started: the same
//! config run from another directory (a service manager's `/`, a shell in
//! the wrong place) silently got an empty database and a fresh secret —
//! every user's authorization gone — and `amesh credentials` inspected yet
//! another copy. The loader therefore anchors them at the directory of the
//! file that declares the app. A config without a file (the embedded dev
//! config of `amesh run`) keeps them relative to the current directory.

use std::path::Path;

use super::model::AgentConfig;

/// Rewrites `agent`'s relative SQLite path and secret file path to lie in
/// `dir`. Absolute paths, in-memory databases and networked databases are
/// left as they are.
pub(super) fn anchor_agent_paths(agent: &mut AgentConfig, dir: &Path) {
    if let Some(url) = agent.session_service.database_url.as_deref()
        && let Some(anchored) = anchor_sqlite_url(url, dir)
    {
        agent.session_service.database_url = Some(anchored);
    }
    if let Some(file) = agent.agent_secret_file.as_deref()
        && file.is_relative()
    {
        agent.agent_secret_file = Some(dir.join(file));
    }
}

/// `url` with its SQLite file path joined onto `dir`, when it is a
/// `sqlite:` URL naming a relative file; `None` otherwise.
fn anchor_sqlite_url(url: &str, dir: &Path) -> Option<String> {
    let url = url.trim();
    let (scheme, rest) = url.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sqlite") {
        return None;
    }
    let (slashes, body) = match rest.strip_prefix("//") {
        Some(body) => ("//", body),
        None => ("", rest),
    };
    let (path, query) = match body.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (body, None),
    };
    let in_memory = path.is_empty()
        || path == ":memory:"
        || query.is_some_and(|q| q.split('&').any(|kv| kv == "mode=memory"));
    if in_memory || Path::new(path).is_absolute() {
        return None;
    }
    let mut out = format!("{scheme}:{slashes}{}", dir.join(path).display());
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_sqlite_files_move_next_to_the_config() {
        let dir = Path::new("/etc/amesh");
        for (url, expected) in [
            ("sqlite://data/a.db", Some("sqlite:///etc/amesh/data/a.db")),
            (
                "sqlite:a.db?mode=rwc",
                Some("sqlite:/etc/amesh/a.db?mode=rwc"),
            ),
            ("SQLITE://a.db", Some("SQLITE:///etc/amesh/a.db")),
            ("sqlite:///var/a.db", None),
            ("sqlite::memory:", None),
            ("sqlite://shared?mode=memory&cache=shared", None),
            ("postgres://u@db/x", None),
        ] {
            assert_eq!(anchor_sqlite_url(url, dir).as_deref(), expected, "{url}");
        }
        assert_eq!(
            anchor_sqlite_url("sqlite://data/a.db", Path::new("conf")).as_deref(),
            Some("sqlite://conf/data/a.db")
        );
    }
}
