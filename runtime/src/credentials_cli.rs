//! `amesh credentials list|revoke|clients|audit`: what operators see and can
//! revoke in agents' credential stores, and the OAuth client registrations
//! they can make an agent forget (and `amesh keys forget-shared`, the trust
//! key kept in the same database). Metadata only: no command prints a token
//! or a client secret.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use amesh_credentials::{ClientInfo, CredentialStore, ExportCursor, Filter};

use crate::config::{self, AppKind, SessionServiceKind};

/// Which credentials an operator means.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub agent: Option<String>,
    pub user: Option<String>,
    pub tool: Option<String>,
    pub include_deleted: bool,
}

/// Opens the existing SQL store of every selected agent of the configs;
/// creates neither a database nor a secret.
async fn stores(files: &[PathBuf], sel: &Selection) -> anyhow::Result<Vec<CredentialStore>> {
    Ok(accounts_and_stores(files, sel)
        .await?
        .into_iter()
        .map(|(_, store)| store)
        .collect())
}

/// [`stores`], each with the broker username its agent connects as.
async fn accounts_and_stores(
    files: &[PathBuf],
    sel: &Selection,
) -> anyhow::Result<Vec<(String, CredentialStore)>> {
    let cfg = config::load_files(files).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut out = Vec::new();
    for app in &cfg.apps {
        let AppKind::Agent(agent) = &app.kind else {
            continue;
        };
        if sel.agent.as_deref().is_some_and(|a| a != agent.agent_name) {
            continue;
        }
        if agent.session_service.kind != SessionServiceKind::Sql {
            eprintln!(
                "note: agent {} keeps credentials in memory; only the running process sees them",
                agent.agent_name
            );
            continue;
        }
        let store_cfg = crate::agent::store::existing_store_config(agent)?;
        let account = app
            .broker
            .broker_username
            .clone()
            .unwrap_or_else(|| app.name.clone());
        out.push((account, CredentialStore::open(store_cfg).await?));
    }
    if out.is_empty() {
        anyhow::bail!("no agent with a sql session_service matches");
    }
    Ok(out)
}

fn filter(agent: &str, sel: &Selection) -> Filter {
    let mut f = Filter::agent(agent);
    if let Some(u) = &sel.user {
        f = f.user(u);
    }
    if let Some(t) = &sel.tool {
        f = f.tool(t);
    }
    if sel.include_deleted {
        f = f.with_deleted();
    }
    f
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Prints one line per credential (tab-separated, with a header).
pub async fn list(files: &[PathBuf], sel: &Selection) -> anyhow::Result<()> {
    let stores = stores(files, sel).await?;
    println!("agent\tuser\ttool\tscopes\tissuer\ttoken_expires\texpires\tdeleted");
    for store in stores {
        for c in store.list(&filter(store.agent_id(), sel)).await? {
            println!(
                "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                c.agent_id,
                c.user_id,
                c.tool_id,
                c.scopes.join(" "),
                c.issuer.as_deref().unwrap_or("-"),
                c.token_expires_at
                    .map(unix)
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "-".into()),
                unix(c.expires_at),
                c.delete_reason.map(|r| r.as_str()).unwrap_or("-"),
            );
        }
        store.close().await;
    }
    Ok(())
}

/// Marks the selected credentials deleted with reason `revoked` (audited);
/// returns how many.
pub async fn revoke(files: &[PathBuf], sel: &Selection, reason: &str) -> anyhow::Result<u64> {
    if sel.user.is_none() && sel.tool.is_none() && sel.agent.is_none() {
        anyhow::bail!("refusing to revoke everything: name --agent, --user or --tool");
    }
    let mut total = 0;
    for store in stores(files, sel).await? {
        total += store.revoke(&filter(store.agent_id(), sel), reason).await?;
        store.close().await;
    }
    Ok(total)
}

/// The selected agents' client registrations (metadata only).
pub async fn clients(files: &[PathBuf], sel: &Selection) -> anyhow::Result<Vec<ClientInfo>> {
    let mut all = Vec::new();
    for store in stores(files, sel).await? {
        all.extend(store.list_clients().await?);
        store.close().await;
    }
    Ok(all)
}

/// Prints one line per client registration (tab-separated, with a header).
pub fn print_clients(clients: &[ClientInfo]) {
    println!("agent\tissuer\tclient_id\tcreated\tupdated");
    for c in clients {
        println!(
            "{}\t{}\t{}\t{}\t{}",
            c.agent_id,
            c.server,
            c.client_id,
            unix(c.created_at),
            unix(c.updated_at)
        );
    }
}

/// Forgets the selected agents' registrations at `issuer`; returns how
/// many there were. Users' credentials stay: their refresh goes on with
/// the old client until the server refuses it.
pub async fn forget_client(
    files: &[PathBuf],
    sel: &Selection,
    issuer: &str,
) -> anyhow::Result<u64> {
    let mut total = 0;
    for store in stores(files, sel).await? {
        if store.delete_client(issuer).await? {
            tracing::info!(agent = %store.agent_id(), issuer, "client registration forgotten by an operator");
            total += 1;
        }
        store.close().await;
    }
    Ok(total)
}

/// Deletes the trust key kept in the database of each selected agent (see
/// `trust_manager::key_source`); returns how many there were. The next
/// replica to start makes a new one: after a change of agent secret, or to
/// rotate the key, stop every replica first.
pub async fn forget_trust_keys(files: &[PathBuf], sel: &Selection) -> anyhow::Result<u64> {
    let mut total = 0;
    for (account, store) in accounts_and_stores(files, sel).await? {
        if store.forget_trust_key(&account).await? {
            tracing::info!(agent = %store.agent_id(), account, "stored trust key deleted by an operator");
            total += 1;
        }
        store.close().await;
    }
    Ok(total)
}

/// Events read per query during an export: memory stays bounded however
/// long the audit trail is.
const EXPORT_PAGE: u64 = 1000;

/// Writes the selected agents' audit events from `since` to `out`, one
/// JSON object per line (see [`amesh_credentials::CredentialEvent::to_json`]),
/// each agent's oldest first; returns how many. Never writes token material:
/// events hold none.
pub async fn export_audit(
    files: &[PathBuf],
    sel: &Selection,
    since: SystemTime,
    out: &mut impl std::io::Write,
) -> anyhow::Result<u64> {
    let mut total = 0;
    for store in stores(files, sel).await? {
        let filter = filter(store.agent_id(), sel);
        let mut cursor = ExportCursor::since(since);
        loop {
            let page = store.export_events(&filter, cursor, EXPORT_PAGE).await?;
            for event in &page {
                writeln!(out, "{}", event.to_json())?;
            }
            total += page.len() as u64;
            match page.last() {
                Some(last) if page.len() as u64 == EXPORT_PAGE => cursor = cursor.after(last.id),
                _ => break,
            }
        }
        store.close().await;
    }
    out.flush()?;
    Ok(total)
}

/// `--since` that could not be read.
#[derive(Debug, thiserror::Error)]
#[error(
    "--since {given:?}: expected RFC 3339 (2026-12-01T00:00:00Z), Unix seconds, or an age such as 90m, 24h, 7d"
)]
pub struct SinceError {
    given: String,
}

/// Reads `--since`: RFC 3339, Unix seconds, or an age before `now`
/// (`s`, `m`, `h`, `d` suffixes).
pub fn parse_since(given: &str, now: SystemTime) -> Result<SystemTime, SinceError> {
    let err = || SinceError {
        given: given.to_owned(),
    };
    let given = given.trim();
    if let Ok(secs) = given.parse::<u64>() {
        return Ok(UNIX_EPOCH + std::time::Duration::from_secs(secs));
    }
    if let Some(unit) = given.chars().last().filter(|c| "smhd".contains(*c))
        && let Ok(n) = given[..given.len() - 1].parse::<u64>()
    {
        let per = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => 86_400,
        };
        let age = std::time::Duration::from_secs(n.checked_mul(per).ok_or_else(err)?);
        return Ok(now
            .checked_sub(age)
            .filter(|t| *t >= UNIX_EPOCH)
            .unwrap_or(UNIX_EPOCH));
    }
    time::OffsetDateTime::parse(given, &time::format_description::well_known::Rfc3339)
        .map(SystemTime::from)
        .map_err(|_| err())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_reads_rfc3339_unix_seconds_and_ages() {
        let now = UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        assert_eq!(
            parse_since("2026-12-01T00:00:00Z", now).expect("rfc3339"),
            UNIX_EPOCH + std::time::Duration::from_secs(1_796_083_200)
        );
        assert_eq!(
            parse_since("1234", now).expect("unix"),
            UNIX_EPOCH + std::time::Duration::from_secs(1234)
        );
        assert_eq!(
            parse_since("2h", now).expect("age"),
            now - std::time::Duration::from_secs(7200)
        );
        assert_eq!(
            parse_since("7d", now).expect("age"),
            now - std::time::Duration::from_secs(7 * 86_400)
        );
        // An age beyond the epoch is the epoch.
        assert_eq!(parse_since("30d", now).expect("age"), UNIX_EPOCH);
        let err = parse_since("yesterday", now).expect_err("words are refused");
        assert!(err.to_string().contains("\"yesterday\""), "{err}");
    }
}
