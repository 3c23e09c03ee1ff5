//! The `amesh` command line (`src/main.rs` only calls [`main`]).
//!
//! It lives in the library rather than in the binary for build time: the
//! async state machines that `block_on` drives (all of `amesh run`) are
//! compiled in the crate that polls them, so with the command line in the
//! binary the release build compiled the whole runtime's futures twice,
//! once for the library and again for the binary (56 s of a fresh release
//! build on two cores, after the library's own 117 s).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Parser, Subcommand};

use crate::{acl, config, gateway, logging, run};

/// amesh: a message-broker native agent runtime. Gateways and agents talk
/// A2A over an MQTT v5 broker; users reach remote tools with their own
/// credentials.
#[derive(Parser)]
#[command(name = "amesh", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start every app of the given YAML configs in this process. Without
    /// files, runs the embedded dev config (a gateway and an agent on the
    /// in-process dev bus).
    Run {
        /// YAML app configs (`apps: [...]`); a Python logging config
        /// (`logging_config.yaml`) among them sets the log levels.
        files: Vec<PathBuf>,
        /// Start the apps amesh implements and skip, with a warning, those
        /// whose `app_module` it does not (SAM workflows, platform service,
        /// other gateways); without it such an app is an error.
        #[arg(long)]
        skip_unsupported: bool,
    },
    /// Work with config files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Gateway user helpers.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Run the demo OAuth 2.1 authorization server and MCP server (both
    /// transports) whose tools answer with the signed-in user's name.
    DemoProvider {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        #[arg(long, default_value_t = 9100)]
        port: u16,
        /// Base URL clients reach it at, when not http://HOST:PORT (e.g.
        /// behind compose service names).
        #[arg(long)]
        public_url: Option<String>,
        /// Base URL browsers reach the consent page at, when not the public
        /// URL (e.g. http://localhost:9100, a port published by compose).
        #[arg(long)]
        browser_url: Option<String>,
    },
    /// Operators' view of agents' stored credentials (metadata only).
    Credentials {
        #[command(subcommand)]
        command: CredentialsCommand,
    },
    /// Trust manager keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Broker access control provisioning.
    Acl {
        #[command(subcommand)]
        command: AclCommand,
    },
}

#[derive(Subcommand)]
enum AclCommand {
    /// Write broker users and ACLs (Mosquitto or Solace) derived from configs.
    ///
    /// Derives each component's broker user and the exact topics it may
    /// publish and subscribe from the YAML configs, and writes broker
    /// provisioning files into --out (mode 0600). Each component may publish
    /// its trust card only on its own trust topic.
    ///
    /// Passwords come from each app's broker_password; users without one
    /// get a random password, printed once. Apps on dev_mode brokers are
    /// skipped.
    ///
    /// Formats:
    ///   mosquitto          dynamic-security.json (the dynamic-security plugin:
    ///                      users bound to their client ids, roles checking
    ///                      publishes and subscriptions, $share groups included)
    ///                      and a mosquitto.conf snippet loading it; alias
    ///                      mosquitto-dynsec
    ///   mosquitto-aclfile  password_file ($7$ hashes), acl_file, mosquitto.conf
    ///                      snippet; no plugin, but subscriptions and client ids
    ///                      are not checked
    ///   solace-semp        semp-plan.json (SEMP v2 requests: per component an ACL
    ///                      profile with SMF topic and share-name exceptions, a
    ///                      client username, and its MQTT session owned by it)
    ///                      and APPLY.md (how to apply it with curl)
    #[command(verbatim_doc_comment)]
    Generate {
        /// Output format.
        #[arg(long, value_enum)]
        format: acl::cli::Format,
        /// Directory to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// YAML app configs (`apps: [...]`) describing the whole mesh.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Validate configs without connecting to anything; prints every error
    /// as FILE:LINE:COLUMN: KEY: MESSAGE and exits non-zero if any.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Print the `token_sha256` value for an API token (read from stdin when
    /// not given, so it stays out of shell history).
    HashToken { token: Option<String> },
}

#[derive(clap::Args)]
struct CredentialsSelection {
    /// Agent configs (their session_service says where credentials live).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    #[arg(long)]
    agent: Option<String>,
    #[arg(long)]
    user: Option<String>,
    /// Tool id (the MCP block's `id`, or its normalized URL).
    #[arg(long)]
    tool: Option<String>,
}

#[derive(Subcommand)]
enum CredentialsCommand {
    /// List stored credentials: agent, user, tool, scopes, issuer, expiry.
    List {
        #[command(flatten)]
        select: CredentialsSelection,
        /// Include credentials kept for audit after deletion.
        #[arg(long)]
        deleted: bool,
    },
    /// Mark credentials deleted (reason `revoked`, audited); their users
    /// authorize again on next use.
    Revoke {
        #[command(flatten)]
        select: CredentialsSelection,
    },
    /// Agents' OAuth client registrations at authorization servers.
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// The credential audit trail (acquired, used, refreshed, expired,
    /// deleted, revoked, access_denied, decrypt_failed).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// List registrations: agent, issuer, client_id, created, updated.
    List {
        /// Agent configs (their session_service says where registrations live).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        agent: Option<String>,
    },
    /// Forget the registration at an issuer: the agent registers again on
    /// its next authorization there (for a provider that lost it).
    Forget {
        /// Agent configs (their session_service says where registrations live).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        agent: Option<String>,
        /// The issuer, as `clients list` prints it.
        #[arg(long)]
        issuer: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print audit events as JSON lines, oldest first, for a SIEM
    /// (`amesh credentials audit export agents.yaml --since 24h > audit.jsonl`).
    Export {
        #[command(flatten)]
        select: CredentialsSelection,
        /// Only events from this time on: RFC 3339 (`2026-12-01T00:00:00Z`),
        /// Unix seconds, or an age (`90m`, `24h`, `7d`). Default: all.
        #[arg(long)]
        since: Option<String>,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a P-256 key (PEM PKCS#8, mode 0600) for `trust_manager.key_file`
    /// and print its key id. Refuses to overwrite an existing file.
    Generate {
        #[arg(long)]
        out: PathBuf,
    },
    /// Delete the trust key an agent with a sql session_service keeps in its
    /// database for its replicas; the next replica to start makes a new one.
    /// For a changed agent secret (replicas then refuse to start), or to
    /// rotate the key: stop every replica, forget, start them again.
    ForgetShared {
        /// Agent configs (their session_service says where the key lives).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[arg(long)]
        agent: Option<String>,
    },
}

/// The config `amesh run` uses when given no files.
const EMBEDDED_DEV: &str = include_str!("../../configs/dev.yaml");

/// Parses the command line and runs the command.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run {
            files,
            skip_unsupported,
        } => run_command(files, skip_unsupported),
        Command::Config {
            command: ConfigCommand::Check { files },
        } => match config::load_files(&files) {
            Ok(cfg) => {
                for warning in &cfg.warnings {
                    eprintln!("warning: {warning}");
                }
                println!(
                    "ok: {} file(s), {} app(s), {} warning(s)",
                    files.len(),
                    cfg.apps.len(),
                    cfg.warnings.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        },
        Command::DemoProvider {
            host,
            port,
            public_url,
            browser_url,
        } => demo_provider(host, port, public_url, browser_url),
        Command::Credentials { command } => credentials(command),
        Command::Keys {
            command: KeysCommand::ForgetShared { files, agent },
        } => forget_shared_keys(files, agent),
        Command::Keys {
            command: KeysCommand::Generate { out },
        } => {
            if out.exists() {
                eprintln!("error: {} exists; not overwriting a key", out.display());
                return ExitCode::FAILURE;
            }
            match amesh_trust::SigningKey::load_or_create(&out) {
                Ok(key) => {
                    println!("wrote {} (kid {})", out.display(), key.kid());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Acl {
            command: AclCommand::Generate { format, out, files },
        } => match acl::cli::generate(format, &out, &files) {
            Ok(report) => match report.print(&mut std::io::stdout().lock()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: writing the report: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Users {
            command: UsersCommand::HashToken { token },
        } => {
            let token = match token {
                Some(t) => t,
                None => {
                    let mut s = String::new();
                    if let Err(e) = std::io::stdin().read_to_string(&mut s) {
                        eprintln!("error: reading stdin: {e}");
                        return ExitCode::FAILURE;
                    }
                    s.trim().to_string()
                }
            };
            println!("{}", gateway::auth::token_hash_hex(&token));
            ExitCode::SUCCESS
        }
    }
}

fn forget_shared_keys(files: Vec<PathBuf>, agent: Option<String>) -> ExitCode {
    let sel = crate::credentials_cli::Selection {
        agent,
        ..Default::default()
    };
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(crate::credentials_cli::forget_trust_keys(&files, &sel)));
    match result {
        Ok(n) => {
            println!("forgot {n} stored trust key(s)");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn credentials(command: CredentialsCommand) -> ExitCode {
    use crate::credentials_cli::{
        Selection, clients, export_audit, forget_client, list, parse_since, print_clients, revoke,
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let selection = |s: CredentialsSelection, deleted: bool| {
        (
            s.files,
            Selection {
                agent: s.agent,
                user: s.user,
                tool: s.tool,
                include_deleted: deleted,
            },
        )
    };
    let result = match command {
        CredentialsCommand::List { select, deleted } => {
            let (files, sel) = selection(select, deleted);
            rt.block_on(list(&files, &sel))
        }
        CredentialsCommand::Revoke { select } => {
            let (files, sel) = selection(select, false);
            rt.block_on(revoke(&files, &sel, "revoked by operator"))
                .map(|n| println!("revoked {n} credential(s)"))
        }
        CredentialsCommand::Clients {
            command: ClientsCommand::List { files, agent },
        } => {
            let sel = Selection {
                agent,
                ..Selection::default()
            };
            rt.block_on(clients(&files, &sel))
                .map(|c| print_clients(&c))
        }
        CredentialsCommand::Clients {
            command:
                ClientsCommand::Forget {
                    files,
                    agent,
                    issuer,
                },
        } => {
            let sel = Selection {
                agent,
                ..Selection::default()
            };
            rt.block_on(forget_client(&files, &sel, &issuer))
                .map(|n| println!("forgot {n} client registration(s)"))
        }
        CredentialsCommand::Audit {
            command: AuditCommand::Export { select, since },
        } => {
            let (files, sel) = selection(select, false);
            match since.as_deref().map(|s| parse_since(s, SystemTime::now())) {
                Some(Err(e)) => Err(e.into()),
                since => {
                    let since = since.and_then(Result::ok).unwrap_or(SystemTime::UNIX_EPOCH);
                    let out = &mut std::io::stdout().lock();
                    rt.block_on(export_audit(&files, &sel, since, out))
                        .map(|n| eprintln!("exported {n} event(s)"))
                }
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn demo_provider(
    host: std::net::IpAddr,
    port: u16,
    public_url: Option<String>,
    browser_url: Option<String>,
) -> ExitCode {
    use amesh_demo::{DemoOptions, serve};
    let public_url = match public_url.map(|u| u.parse()).transpose() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: --public-url: {e}");
            return ExitCode::FAILURE;
        }
    };
    let browser_url = match browser_url.map(|u| u.parse()).transpose() {
        Ok(u) => u,
        Err(e) => {
            eprintln!("error: --browser-url: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _logging = match logging::init(&config::LogConfig::default()) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let opts = DemoOptions {
        bind: (host, port).into(),
        public_url,
        browser_url,
        ..DemoOptions::default()
    };
    let result = tokio::runtime::Runtime::new()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(serve(opts)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The demo provider for the embedded dev config, on 127.0.0.1:9100 —
/// unless the operator pointed the config elsewhere (`DEMO_MCP_URL`) or
/// one already runs there (`amesh demo-provider` in another terminal).
async fn embedded_demo_provider() -> Option<amesh_demo::DemoHandle> {
    use amesh_demo::{DemoOptions, DemoProvider};
    if std::env::var_os("DEMO_MCP_URL").is_some() {
        return None;
    }
    let opts = DemoOptions {
        bind: std::net::SocketAddr::from(([127, 0, 0, 1], 9100)),
        ..DemoOptions::default()
    };
    match DemoProvider::start(opts).await {
        Ok(demo) => {
            tracing::info!(url = %demo.base_url, "demo provider (OAuth server, MCP server, demo model) started in-process");
            Some(demo)
        }
        Err(e) => {
            tracing::info!(error = %e, "demo provider not started in-process (one may already run on 127.0.0.1:9100)");
            None
        }
    }
}

fn run_command(files: Vec<PathBuf>, skip_unsupported: bool) -> ExitCode {
    let loaded = if files.is_empty() {
        config::load_str("<embedded configs/dev.yaml>", EMBEDDED_DEV)
    } else {
        let options = config::LoadOptions { skip_unsupported };
        config::load_files_with(&files, &|name| std::env::var(name).ok(), options)
    };
    let cfg = match loaded {
        Ok(cfg) => cfg,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    // Kept to the end: dropping it flushes the spans not yet exported.
    let _logging = match logging::init(&cfg.log) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    for warning in &cfg.warnings {
        tracing::warn!("{warning}");
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let embedded = files.is_empty();
    let result = rt.block_on(async move {
        // The embedded config's agent uses the demo provider's tools and its
        // demo model: serve them in-process, so the first command a newcomer
        // runs shows the whole story with nothing else installed.
        let _demo = if embedded {
            embedded_demo_provider().await
        } else {
            None
        };
        run::run(cfg).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
