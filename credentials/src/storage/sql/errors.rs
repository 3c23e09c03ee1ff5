//! Turning driver errors into errors a caller can act on.
//!
//! The one distinction that matters to callers is "the database is not
//! there right now" (`Unavailable`: retry, tell the user to try later)
//! versus "the database said no" (`Database`: a bug or a broken schema).
//! Every message is scrubbed of the URL's password before it leaves, and
//! names the backend and host.

use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr, sqlx};

use crate::config::{DatabaseUrl, Dialect};
use crate::error::CredentialError;

/// Maps `err` for the database at `url`.
pub(crate) fn map_db_err(url: &DatabaseUrl, err: &DbErr) -> CredentialError {
    let detail = url.scrub(&describe(err));
    let backend = url.backend_name();
    let target = url.target().to_owned();
    if is_unavailable(url.dialect(), err) {
        CredentialError::Unavailable {
            backend,
            target,
            detail,
        }
    } else {
        CredentialError::Database {
            backend,
            target,
            detail,
        }
    }
}

/// The pool reports a server it cannot reach as "timed out" (it retries
/// until the connect timeout); one TCP connect of our own says why —
/// refused, no route, unknown host — for the operator reading the error.
pub(crate) async fn explain_connect_failure(
    url: &DatabaseUrl,
    err: CredentialError,
) -> CredentialError {
    let (
        CredentialError::Unavailable {
            backend,
            target,
            detail,
        },
        Some(host_port),
    ) = (&err, url.host_port())
    else {
        return err;
    };
    if !detail.starts_with("timed out") {
        return err;
    }
    let probe = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        tokio::net::TcpStream::connect(host_port),
    )
    .await;
    let why = match probe {
        Ok(Ok(_)) => return err,
        Ok(Err(io)) => format!("TCP connect to {host_port}: {io}"),
        Err(_) => format!("TCP connect to {host_port} timed out"),
    };
    CredentialError::Unavailable {
        backend,
        target: target.clone(),
        detail: url.scrub(&format!("{detail} ({why})")),
    }
}

/// The driver's message without sea-orm's nesting prefixes.
fn describe(err: &DbErr) -> String {
    match err {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => {
            "timed out waiting for a database connection".into()
        }
        DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed) => {
            "the connection pool is closed".into()
        }
        DbErr::Conn(RuntimeErr::SqlxError(e))
        | DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e)) => match e.as_ref() {
            sqlx::Error::PoolTimedOut => "timed out waiting for a database connection".into(),
            sqlx::Error::Database(db) => match server_code(db.as_ref()) {
                Some(code) => format!("{} (code {code})", db.message()),
                None => db.message().to_owned(),
            },
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

fn is_unavailable(dialect: Dialect, err: &DbErr) -> bool {
    match err {
        // A URL the driver cannot use is not an outage.
        DbErr::Conn(RuntimeErr::SqlxError(e))
            if matches!(e.as_ref(), sqlx::Error::Configuration(_)) =>
        {
            false
        }
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
            sqlx_unavailable(dialect, e)
        }
        _ => false,
    }
}

fn sqlx_unavailable(dialect: Dialect, err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::BeginFailed => true,
        sqlx::Error::Database(db) => {
            server_code(db.as_ref()).is_some_and(|code| unavailable_code(dialect, &code))
        }
        _ => false,
    }
}

/// The code to classify: MySQL's error number (its `code()` is only the
/// coarse SQLSTATE), the SQLSTATE or SQLite result code elsewhere.
fn server_code(db: &dyn sqlx::error::DatabaseError) -> Option<String> {
    #[cfg(feature = "mysql")]
    if let Some(mysql) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        return Some(mysql.number().to_string());
    }
    db.code().map(|c| c.into_owned())
}

/// Server error codes that mean "not reachable / not serving right now".
fn unavailable_code(dialect: Dialect, code: &str) -> bool {
    match dialect {
        // SQLSTATE: connection exceptions (08), insufficient resources
        // (53), operator intervention (57: admin shutdown, cannot connect
        // now, database dropped), database does not exist (3D000).
        Dialect::Postgres => {
            code.starts_with("08")
                || code.starts_with("53")
                || code.starts_with("57")
                || code == "3D000"
        }
        // Too many connections, access denied (db, user), unknown
        // database, shutdown in progress, lock wait timeout, read-only,
        // account locked, server gone away, lost connection, can't connect.
        Dialect::MySql => matches!(
            code,
            "1040"
                | "1044"
                | "1045"
                | "1049"
                | "1053"
                | "1205"
                | "1290"
                | "3118"
                | "4151"
                | "2002"
                | "2003"
                | "2006"
                | "2013"
        ),
        // Primary result codes (extended codes keep the primary in the low
        // byte): BUSY, LOCKED, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB.
        Dialect::Sqlite => code
            .parse::<i64>()
            .is_ok_and(|c| matches!(c & 0xff, 5 | 6 | 8 | 10 | 11 | 13 | 14 | 26)),
    }
}

/// Whether `err` is SQLite's "busy" (any extended code of
/// `SQLITE_BUSY`). A write transaction that began by reading (SQLite's
/// deferred `BEGIN`) gets `SQLITE_BUSY_SNAPSHOT` at once, without waiting
/// for the busy timeout, when another connection to the same file wrote
/// after its read: its snapshot is stale and only starting over helps.
/// Several stores (replicas, or tests) sharing one SQLite file meet this.
pub(crate) fn is_sqlite_busy(err: &DbErr) -> bool {
    let (DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e))) = err
    else {
        return false;
    };
    match e.as_ref() {
        sqlx::Error::Database(db)
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() =>
        {
            db.code()
                .and_then(|c| c.parse::<i64>().ok())
                .is_some_and(|c| c & 0xff == 5)
        }
        _ => false,
    }
}

/// Whether `err` is a unique-constraint violation (a concurrent insert won).
pub(crate) fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_codes_are_classified() {
        for code in ["08006", "57P01", "57P03", "3D000"] {
            assert!(unavailable_code(Dialect::Postgres, code), "{code}");
        }
        for code in ["2013", "1049", "4151"] {
            assert!(unavailable_code(Dialect::MySql, code), "{code}");
        }
        for code in ["5", "517", "14", "26"] {
            assert!(unavailable_code(Dialect::Sqlite, code), "{code}");
        }
        assert!(!unavailable_code(Dialect::Postgres, "23505"));
        assert!(!unavailable_code(Dialect::Postgres, "42P01"));
        assert!(!unavailable_code(Dialect::MySql, "1062"));
        assert!(!unavailable_code(Dialect::MySql, "1146"));
        assert!(!unavailable_code(Dialect::Sqlite, "2067"));
        assert!(!unavailable_code(Dialect::Sqlite, "1"));
    }
}
