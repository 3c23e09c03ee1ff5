//! Relative file paths in a config file mean "next to this file".
//!
//! `sqlite:///data/agent.db` (SQLAlchemy's relative form, as SAM writes it) and `agent_secret_file: data/agent.secret`
//! used to be opened relative to wherever `amesh` was started: the same
//! config run from another directory (a service manager's `/`, a shell in
//! the wrong place) silently got an empty database and a fresh secret —
//! every user's authorization gone — and `amesh credentials` inspected yet
//! another copy. The loader therefore anchors them at the directory of the
//! file that declares the app. A config without a file (the embedded dev
//! config of `amesh run`) keeps them relative to the current directory.

use std::path::Path;

use std::path::PathBuf;

use super::model::{AgentConfig, SessionServiceKind};

/// Rewrites `agent`'s relative SQLite path and secret file path to lie in
/// `dir` (empty: left relative to the current directory). Absolute paths,
/// in-memory databases and networked databases are left as they are.
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
    if let Some(service) = agent.artifact_service.as_mut()
        && let Some(base) = service.base_path.as_deref()
        && base.is_relative()
    {
        service.base_path = Some(dir.join(base));
    }
    if agent.agent_secret_file.is_none()
        && agent.session_service.kind == SessionServiceKind::Sql
        && let Some(url) = agent.session_service.database_url.as_deref()
    {
        agent.agent_secret_file = Some(default_secret_file(url, &agent.agent_name, dir));
        agent.agent_secret_default = true;
    }
}

/// Where an agent with SQL persistence keeps its secret when the config
/// names none (and `AMESH_AGENT_SECRET` is unset): encryption at rest then
/// needs no configuration, as SAM's guide promises. Next to a SQLite
/// database, `<db dir>/<db name>.<agent>.secret`; for a networked database
/// (or an in-memory one), `<config dir>/<agent>.secret`. The agent name is
/// in it so agents sharing a database keep separate keys.
fn default_secret_file(url: &str, agent: &str, dir: &Path) -> PathBuf {
    let file_name: String = agent
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let sqlite_file = url
        .strip_prefix("sqlite://")
        .map(|rest| rest.split('?').next().unwrap_or(rest))
        .filter(|path| !path.is_empty() && *path != ":memory:" && !url.contains("mode=memory"))
        .map(Path::new);
    match sqlite_file {
        Some(db) => {
            let stem = db
                .file_stem()
                .map(|s| s.to_string_lossy())
                .unwrap_or_default();
            db.with_file_name(format!("{stem}.{file_name}.secret"))
        }
        None => dir.join(format!("{file_name}.secret")),
    }
}

/// A `sqlite:` URL as `sqlite://PATH[?query]` with PATH joined onto `dir`
/// when relative; `None` for other URLs and in-memory databases.
///
/// The path is read as SQLAlchemy (and so SAM) reads it: `sqlite:///x.db`
/// is the relative path `x.db`, `sqlite:////var/x.db` the absolute path
/// `/var/x.db`. `sqlite://x.db` and `sqlite:x.db` (sqlx's spellings) are
/// relative too.
fn anchor_sqlite_url(url: &str, dir: &Path) -> Option<String> {
    let url = url.trim();
    let (scheme, rest) = url.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sqlite") {
        return None;
    }
    let body = rest
        .strip_prefix("///")
        .or_else(|| rest.strip_prefix("//"))
        .unwrap_or(rest);
    let (path, query) = match body.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (body, None),
    };
    let in_memory = path.is_empty()
        || path == ":memory:"
        || query.is_some_and(|q| q.split('&').any(|kv| kv == "mode=memory"));
    if in_memory {
        return None;
    }
    let mut out = format!("sqlite://{}", dir.join(path).display());
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
                Some("sqlite:///etc/amesh/a.db?mode=rwc"),
            ),
            ("SQLITE://a.db", Some("sqlite:///etc/amesh/a.db")),
            // SQLAlchemy: three slashes and a relative path, four for absolute.
            ("sqlite:///var/a.db", Some("sqlite:///etc/amesh/var/a.db")),
            ("sqlite:////var/a.db", Some("sqlite:///var/a.db")),
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
        assert_eq!(
            anchor_sqlite_url("sqlite:///session.db", Path::new("")).as_deref(),
            Some("sqlite://session.db")
        );
    }

    #[test]
    fn default_secret_sits_next_to_the_sqlite_file_or_the_config() {
        let dir = Path::new("/etc/amesh");
        assert_eq!(
            default_secret_file(
                "sqlite:///srv/data/stripe-agent.db?mode=rwc",
                "StripeAgent",
                dir
            ),
            Path::new("/srv/data/stripe-agent.StripeAgent.secret")
        );
        assert_eq!(
            default_secret_file("postgres://u@db/x", "a/b", dir),
            Path::new("/etc/amesh/a_b.secret")
        );
    }
}
