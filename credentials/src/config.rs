//! How a store is opened: plain values the runtime maps its agent config to.
//!
//! The runtime's `session_service` block (`type: memory | sql`,
//! `database_url`) becomes a [`StoreBackend`]; `SECRETS_TTL_SECONDS`
//! becomes [`StoreConfig::ttl`] (see [`ttl_from_env`](crate::ttl_from_env)).
//! `default_behavior: PERSISTENT | RUN_BASED` is deliberately *not* here:
//! it governs conversation sessions, and the runtime applies it when it
//! loads them. Credential lifetime is the TTL, and a "forget at start"
//! mode would sign every user out whenever one replica of a scaled-out
//! agent restarts. Stored conversations have their own retention,
//! [`StoreConfig::conversation_ttl`].
//!
//! [`DatabaseUrl`] keeps the password out of every `Debug`, error and log:
//! it knows the password, so it can scrub it from driver messages too.

use std::fmt;
use std::time::Duration;

use crate::error::CredentialError;
use crate::secret::{AgentSecret, SecretString};
use crate::ttl::DEFAULT_TTL;

/// How long a pending OAuth flow is accepted: ten minutes.
pub const DEFAULT_FLOW_TTL: Duration = Duration::from_secs(600);

/// How long a conversation is kept after its last save: 30 days.
pub const DEFAULT_CONVERSATION_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Where credentials live.
#[derive(Debug)]
pub enum StoreBackend {
    /// In process memory: same rules (TTL, audit, single-use flows), lost
    /// on restart by design, not shared between replicas.
    Memory,
    /// A SQL database (SQLite, PostgreSQL, MySQL/MariaDB), migrated at open.
    Sql {
        /// The agent's `session_service.database_url`.
        database_url: DatabaseUrl,
    },
}

/// Everything needed to open a [`CredentialStore`](crate::CredentialStore).
#[derive(Debug)]
pub struct StoreConfig {
    /// Memory or SQL.
    pub backend: StoreBackend,
    /// The agent this store serves; every row is scoped to it.
    pub agent_id: String,
    /// Key material for encryption at rest (never stored in the database).
    pub agent_secret: AgentSecret,
    /// Lifetime of a stored credential (`SECRETS_TTL_SECONDS`; at most 30
    /// days). Each store (refresh) starts it again.
    pub ttl: Duration,
    /// Lifetime of a pending OAuth flow (default ten minutes).
    pub flow_ttl: Duration,
    /// How long a conversation is kept after its last save (default 30
    /// days): it reads as absent after that, and the sweeper deletes it.
    /// Unlike [`ttl`](Self::ttl) it has no maximum — how long chat history
    /// is kept is the operator's retention policy, not a token lifetime.
    pub conversation_ttl: Duration,
    /// How often the sweeper marks expired credentials deleted and drops
    /// old flows and conversations (default a minute).
    pub sweep_interval: Duration,
    /// How long to wait for a database connection before `Unavailable`
    /// (also SQLite's busy timeout). Default ten seconds.
    pub connect_timeout: Duration,
    /// Pool size for PostgreSQL and MySQL (SQLite always uses one
    /// connection: it serializes writers anyway). Default 10.
    pub max_connections: u32,
}

impl StoreConfig {
    /// A configuration with the defaults: TTL 30 days, flows ten minutes,
    /// conversations 30 days, sweep every minute, ten-second connect
    /// timeout, pool of 10.
    pub fn new(
        backend: StoreBackend,
        agent_id: impl Into<String>,
        agent_secret: AgentSecret,
    ) -> Self {
        Self {
            backend,
            agent_id: agent_id.into(),
            agent_secret,
            ttl: DEFAULT_TTL,
            flow_ttl: DEFAULT_FLOW_TTL,
            conversation_ttl: DEFAULT_CONVERSATION_TTL,
            sweep_interval: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            max_connections: 10,
        }
    }
}

/// The SQL dialects the store speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
    MySql,
}

impl Dialect {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
            Self::MySql => "MySQL/MariaDB",
        }
    }
}

/// A database URL whose password never leaves it: `Debug` and
/// [`redacted`](Self::redacted) replace it with `[redacted]`.
///
/// Accepted: `sqlite://path` (created when missing), `sqlite::memory:`,
/// `postgres://` / `postgresql://`, `mysql://` / `mariadb://`.
pub struct DatabaseUrl {
    /// The URL for the driver, without any password: the driver's own
    /// tracing records the connect options, URL included.
    driver_url: String,
    /// The password, handed to the driver separately.
    password: Option<SecretString>,
    dialect: Dialect,
    target: String,
    /// `host:port` of a networked database (default port filled in).
    host_port: Option<String>,
    redacted: String,
    secrets: Vec<String>,
    /// A SQLite database in a file named by `target` (not `:memory:` or
    /// `mode=memory`).
    sqlite_file: bool,
    /// The driver creates that file when missing (`mode=rwc`, which we
    /// add when the URL has no `mode=`).
    creates_file: bool,
}

impl DatabaseUrl {
    /// Parses and classifies `url`.
    pub fn parse(url: &str) -> Result<Self, CredentialError> {
        let url = url.trim();
        let Some((scheme, rest)) = url.split_once(':') else {
            return Err(invalid(
                url,
                "no scheme: expected sqlite:, postgres:// or mysql://",
            ));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Self::sqlite(rest)),
            "postgres" | "postgresql" => Self::network(Dialect::Postgres, "postgres", url, rest),
            "mysql" | "mariadb" => Self::network(Dialect::MySql, "mysql", url, rest),
            other => Err(invalid(
                url,
                &format!(
                    "unsupported scheme {other:?}: expected sqlite, postgres or mysql/mariadb"
                ),
            )),
        }
    }

    /// `SQLite`, `PostgreSQL` or `MySQL/MariaDB`.
    pub fn backend_name(&self) -> &'static str {
        self.dialect.name()
    }

    /// `user@host:port/database`, or the SQLite file: what error messages name.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The URL with its password replaced by `[redacted]`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The database file of a `sqlite://path` URL; `None` for an in-memory
    /// SQLite database and for other backends.
    pub fn sqlite_file(&self) -> Option<&std::path::Path> {
        self.sqlite_file.then(|| std::path::Path::new(&self.target))
    }

    /// The same URL, but a missing SQLite file is an error instead of being
    /// created: for tools that only read or revoke what an agent stored.
    #[must_use]
    pub fn never_create(mut self) -> Self {
        if self.creates_file
            && let Some((base, query)) = self.driver_url.split_once('?')
        {
            let query: Vec<&str> = query
                .split('&')
                .map(|kv| if kv == "mode=rwc" { "mode=rw" } else { kv })
                .collect();
            self.driver_url = format!("{base}?{}", query.join("&"));
            self.creates_file = false;
        }
        self
    }

    /// Whether opening creates the SQLite file when it is missing.
    pub(crate) fn creates_file(&self) -> bool {
        self.creates_file
    }

    pub(crate) fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Whether this build of amesh can open the URL's database: SQLite
    /// always, PostgreSQL and MySQL/MariaDB with the cargo features
    /// `postgres` and `mysql` (each driver is minutes of a 2-core build,
    /// README "Build time and size"; the container image has both).
    ///
    /// # Errors
    /// [`CredentialError::InvalidDatabaseUrl`] naming the feature to build with.
    pub fn check_built_in(&self) -> Result<(), CredentialError> {
        let feature = match self.dialect {
            Dialect::Sqlite => return Ok(()),
            Dialect::Postgres if cfg!(feature = "postgres") => return Ok(()),
            Dialect::MySql if cfg!(feature = "mysql") => return Ok(()),
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
        };
        Err(CredentialError::InvalidDatabaseUrl {
            redacted_url: self.redacted.clone(),
            reason: format!(
                "this amesh was built without {} support: build it with the cargo feature `{feature}` \
                 (`AMESH_FEATURES={feature} scripts/amesh ...`, or `cargo build --release --features {feature}`), \
                 or use the container image, which has every database",
                self.dialect.name()
            ),
        })
    }

    pub(crate) fn host_port(&self) -> Option<&str> {
        self.host_port.as_deref()
    }

    /// The URL to hand to the driver (no password in it).
    pub(crate) fn driver_url(&self) -> &str {
        &self.driver_url
    }

    /// The password (percent-decoded), if the URL had one.
    pub(crate) fn password(&self) -> Option<&SecretString> {
        self.password.as_ref()
    }

    /// `text` with every form of the password replaced by `[redacted]`.
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.secrets.iter().fold(text.to_owned(), |acc, secret| {
            acc.replace(secret.as_str(), "[redacted]")
        })
    }

    fn sqlite(rest: &str) -> Self {
        let body = rest.strip_prefix("//").unwrap_or(rest);
        let (path, query) = body.split_once('?').unwrap_or((body, ""));
        let mode = query.split('&').find_map(|kv| kv.strip_prefix("mode="));
        let has_mode = mode.is_some();
        let sqlite_file = path != ":memory:" && !path.is_empty() && mode != Some("memory");
        let url = match (has_mode || path == ":memory:", query.is_empty()) {
            (true, _) => format!("sqlite:{rest}"),
            (false, true) => format!("sqlite:{rest}?mode=rwc"),
            (false, false) => format!("sqlite:{rest}&mode=rwc"),
        };
        Self {
            redacted: format!("sqlite:{rest}"),
            driver_url: url,
            password: None,
            dialect: Dialect::Sqlite,
            target: path.to_owned(),
            host_port: None,
            secrets: Vec::new(),
            sqlite_file,
            creates_file: sqlite_file && matches!(mode, None | Some("rwc")),
        }
    }

    fn network(
        dialect: Dialect,
        driver_scheme: &str,
        url: &str,
        rest: &str,
    ) -> Result<Self, CredentialError> {
        let Some(body) = rest.strip_prefix("//") else {
            return Err(invalid(
                url,
                "expected scheme://[user[:password]@]host[:port]/database",
            ));
        };
        let authority_end = body.find(['/', '?', '#']).unwrap_or(body.len());
        let (authority, tail) = body.split_at(authority_end);
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            Some(info) => match info.split_once(':') {
                Some((user, password)) => (user, Some(password)),
                None => (info, None),
            },
            None => ("", None),
        };
        let (path, query) = tail.split_once('?').unwrap_or((tail, ""));
        let mut secrets = Vec::new();
        let mut driver_password = None;
        if let Some(password) = password.filter(|p| !p.is_empty()) {
            secrets.push(password.to_owned());
            let decoded = percent_decode(password);
            secrets.push(decoded.clone());
            driver_password = Some(SecretString::from(decoded));
        }
        let mut redacted_query = Vec::new();
        let mut driver_query = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some((k, v)) if k.to_ascii_lowercase().contains("password") => {
                    if !v.is_empty() {
                        secrets.push(v.to_owned());
                        secrets.push(percent_decode(v));
                        if k == "password" && driver_password.is_none() {
                            driver_password = Some(SecretString::from(percent_decode(v)));
                        }
                    }
                    redacted_query.push(format!("{k}=[redacted]"));
                }
                _ => {
                    redacted_query.push(pair.to_owned());
                    driver_query.push(pair);
                }
            }
        }
        // Longest first, so a password containing another is scrubbed whole.
        secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        secrets.dedup();
        let scheme = url.split(':').next().unwrap_or(driver_scheme);
        let mut redacted = format!("{scheme}://");
        if userinfo.is_some() {
            redacted.push_str(user);
            if password.is_some() {
                redacted.push_str(":[redacted]");
            }
            redacted.push('@');
        }
        redacted.push_str(hostport);
        redacted.push_str(path);
        if !redacted_query.is_empty() {
            redacted.push('?');
            redacted.push_str(&redacted_query.join("&"));
        }
        if hostport.is_empty() {
            return Err(CredentialError::InvalidDatabaseUrl {
                redacted_url: redacted,
                reason: "no host".into(),
            });
        }
        let user_at = if user.is_empty() {
            String::new()
        } else {
            format!("{user}@")
        };
        let has_port = hostport
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let host_port = match (has_port, dialect) {
            (true, _) => hostport.to_owned(),
            (false, Dialect::Postgres) => format!("{hostport}:5432"),
            (false, _) => format!("{hostport}:3306"),
        };
        let mut driver_url = format!("{driver_scheme}://");
        if !user.is_empty() {
            driver_url.push_str(user);
            driver_url.push('@');
        }
        driver_url.push_str(hostport);
        driver_url.push_str(path);
        if !driver_query.is_empty() {
            driver_url.push('?');
            driver_url.push_str(&driver_query.join("&"));
        }
        Ok(Self {
            driver_url,
            password: driver_password,
            dialect,
            target: format!("{user_at}{hostport}{path}"),
            host_port: Some(host_port),
            redacted,
            secrets,
            sqlite_file: false,
            creates_file: false,
        })
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl").field(&self.redacted).finish()
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

fn invalid(url: &str, reason: &str) -> CredentialError {
    // Not parseable, so the password cannot be located: show the scheme only.
    let scheme = url
        .split(':')
        .next()
        .unwrap_or("")
        .chars()
        .take(16)
        .collect::<String>();
    CredentialError::InvalidDatabaseUrl {
        redacted_url: format!("{scheme}:[...]"),
        reason: reason.to_owned(),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::ExposeSecret as _;

    #[test]
    fn postgres_password_is_redacted_everywhere() {
        let url = DatabaseUrl::parse(
            "postgres://amesh:p%40ss-w0rd@db.internal:5432/creds?sslmode=require&password=other-pw",
        )
        .expect("parses");
        assert_eq!(url.backend_name(), "PostgreSQL");
        assert_eq!(url.target(), "amesh@db.internal:5432/creds");
        let shown = format!("{url:?} {url} {}", url.redacted());
        for secret in ["p%40ss-w0rd", "p@ss-w0rd", "other-pw"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert_eq!(
            url.scrub("auth failed for p@ss-w0rd"),
            "auth failed for [redacted]"
        );
        assert_eq!(
            url.driver_url(),
            "postgres://amesh@db.internal:5432/creds?sslmode=require"
        );
        assert_eq!(url.password().map(|p| p.expose_secret()), Some("p@ss-w0rd"));
    }

    #[test]
    fn mariadb_scheme_is_mysql_for_the_driver() {
        let url = DatabaseUrl::parse("mariadb://root@127.0.0.1:3306/test").expect("parses");
        assert_eq!(url.dialect(), Dialect::MySql);
        assert_eq!(url.driver_url(), "mysql://root@127.0.0.1:3306/test");
        assert!(url.password().is_none());
        assert_eq!(url.target(), "root@127.0.0.1:3306/test");
    }

    #[test]
    fn sqlite_file_is_created_when_missing() {
        let url = DatabaseUrl::parse("sqlite:///tmp/x/creds.db").expect("parses");
        assert_eq!(url.driver_url(), "sqlite:///tmp/x/creds.db?mode=rwc");
        assert_eq!(url.target(), "/tmp/x/creds.db");
        let ro = DatabaseUrl::parse("sqlite://creds.db?mode=ro").expect("parses");
        assert_eq!(ro.driver_url(), "sqlite://creds.db?mode=ro");
        assert!(!ro.creates_file());
    }

    #[test]
    fn never_create_opens_an_existing_sqlite_file_only() {
        let url = DatabaseUrl::parse("sqlite://data/creds.db?cache=shared").expect("parses");
        assert_eq!(
            url.sqlite_file(),
            Some(std::path::Path::new("data/creds.db"))
        );
        let url = url.never_create();
        assert_eq!(
            url.driver_url(),
            "sqlite://data/creds.db?cache=shared&mode=rw"
        );
        assert!(!url.creates_file());
        let explicit = DatabaseUrl::parse("sqlite:///x/c.db?mode=rwc").expect("parses");
        assert!(explicit.creates_file());
        assert_eq!(
            explicit.never_create().driver_url(),
            "sqlite:///x/c.db?mode=rw"
        );
        for memory in [
            "sqlite::memory:",
            "sqlite://shared?mode=memory&cache=shared",
        ] {
            let memory = DatabaseUrl::parse(memory).expect("parses");
            assert_eq!(memory.sqlite_file(), None);
        }
    }

    #[test]
    fn unknown_scheme_is_refused_without_echoing_the_url() {
        let err = DatabaseUrl::parse("oracle://u:hunter2@h/db").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("oracle"), "{err}");
    }

    /// SQLite is always there; a networked database only with its
    /// feature, and without it the error names the feature, never the
    /// password. (The suite builds both features; `cargo test -p
    /// amesh-credentials` alone runs the other branch.)
    #[test]
    fn a_database_this_build_lacks_is_refused_naming_the_feature() {
        DatabaseUrl::parse("sqlite::memory:")
            .unwrap()
            .check_built_in()
            .expect("SQLite is always built in");
        for (url, feature, built) in [
            (
                "postgres://u:hunter2@h/db",
                "postgres",
                cfg!(feature = "postgres"),
            ),
            ("mariadb://u:hunter2@h/db", "mysql", cfg!(feature = "mysql")),
        ] {
            let checked = DatabaseUrl::parse(url).unwrap().check_built_in();
            match checked {
                Ok(()) => assert!(built, "{url}"),
                Err(err) => {
                    assert!(!built, "{url}: {err}");
                    let text = err.to_string();
                    assert!(text.contains(&format!("`{feature}`")), "{text}");
                    assert!(!text.contains("hunter2"), "{text}");
                }
            }
        }
    }
}
