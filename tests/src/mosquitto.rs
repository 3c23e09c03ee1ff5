//! A private Mosquitto for one test: its own port, password file and ACL
//! (or dynamic-security plugin config).
//!
//! [`MosquittoBroker::start`] writes a temp dir with `mosquitto.conf`, a
//! password file (hashed by `amesh_runtime::acl::passwd`, the same code
//! provisioning uses) and the ACL file, starts `mosquitto -c` on a free
//! loopback port and returns once the port accepts connections. The broker
//! is killed when the value is dropped. `stop` and `restart` (same port,
//! same files, no persistence) let tests exercise reconnects.
//!
//! [`MosquittoBroker::start_from_generated`] runs what `amesh acl generate`
//! wrote instead, the dynamic-security plugin included.
//!
//! The binary is `$MOSQUITTO_BIN`, else `mosquitto` on `PATH`, else
//! `/usr/sbin/mosquitto` (Debian's package puts it there); the plugin
//! `$MOSQUITTO_DYNSEC_PLUGIN`, else where the package puts it.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use amesh_runtime::acl::mosquitto_dynsec::DYNSEC_FILE;
use amesh_runtime::acl::passwd;
use amesh_runtime::config::BrokerConfig;
use anyhow::{Context, bail};

/// How long `start`/`restart` wait for the port to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(5);
const READY_POLL: Duration = Duration::from_millis(10);
/// Attempts with a fresh port if Mosquitto exits at start (port taken).
const START_ATTEMPTS: usize = 3;

/// How the broker authenticates and authorizes clients.
enum Security {
    /// `password_file` and `acl_file`.
    Files { passwd: String, acl: String },
    /// The dynamic-security plugin at `plugin` with this config.
    Dynsec { config: String, plugin: PathBuf },
}

impl Security {
    /// Writes the files into `dir`; returns the `mosquitto.conf` lines using them.
    fn write(&self, dir: &Path) -> anyhow::Result<String> {
        let d = dir.display();
        Ok(match self {
            Security::Files { passwd, acl } => {
                write_private(&dir.join("passwd"), passwd)?;
                write_private(&dir.join("acl"), acl)?;
                format!("password_file {d}/passwd\nacl_file {d}/acl\n")
            }
            Security::Dynsec { config, plugin } => {
                write_private(&dir.join(DYNSEC_FILE), config)?;
                format!(
                    "plugin {}\nplugin_opt_config_file {d}/{DYNSEC_FILE}\n",
                    plugin.display()
                )
            }
        })
    }
}

/// A running Mosquitto owned by a test. Killed on drop.
pub struct MosquittoBroker {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    child: Option<Child>,
}

impl MosquittoBroker {
    /// A broker where each of `users` may read and write everything under
    /// `{ns}/a2a/v1/` — the usual setup of an end-to-end test.
    pub fn for_namespace(users: &[(&str, &str)], ns: &str) -> anyhow::Result<MosquittoBroker> {
        let acl: String = users
            .iter()
            .map(|(u, _)| format!("user {u}\ntopic readwrite {ns}/a2a/v1/#\n"))
            .collect();
        Self::start(users, &acl)
    }

    /// Starts a broker that accepts `users` (name, password) and enforces
    /// `acl` (Mosquitto `acl_file` syntax). Anonymous clients are refused.
    pub fn start(users: &[(&str, &str)], acl: &str) -> anyhow::Result<MosquittoBroker> {
        Self::start_with(users, acl, "")
    }

    /// Like [`start`](Self::start), with `extra_conf` appended to
    /// `mosquitto.conf` (e.g. `max_queued_messages 100000`).
    pub fn start_with(
        users: &[(&str, &str)],
        acl: &str,
        extra_conf: &str,
    ) -> anyhow::Result<MosquittoBroker> {
        let mut passwd_file = String::new();
        for (user, password) in users {
            let line = passwd::password_line(user, password)?;
            writeln!(passwd_file, "{line}")?;
        }
        Self::launch(
            Security::Files {
                passwd: passwd_file,
                acl: acl.to_string(),
            },
            extra_conf,
        )
    }

    /// Starts a broker on a password file and ACL file made elsewhere (by
    /// `amesh acl generate`, say), so a test runs exactly what an operator
    /// would deploy. The files are copied into the broker's temp dir.
    pub fn start_from_files(
        password_file: &Path,
        acl_file: &Path,
    ) -> anyhow::Result<MosquittoBroker> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
        };
        Self::launch(
            Security::Files {
                passwd: read(password_file)?,
                acl: read(acl_file)?,
            },
            "",
        )
    }

    /// Starts a broker on everything `amesh acl generate --format
    /// mosquitto*` wrote into `dir`: `dynamic-security.json` (loaded into
    /// the dynamic-security plugin) or `password_file` and `acl_file`, and
    /// the broker-wide settings of its `mosquitto.conf` (size limits and the
    /// like). Listener, file paths and logging stay the harness's own.
    pub fn start_from_generated(dir: &Path) -> anyhow::Result<MosquittoBroker> {
        let read = |name: &str| {
            std::fs::read_to_string(dir.join(name))
                .with_context(|| format!("reading {}/{name}", dir.display()))
        };
        let conf = read("mosquitto.conf")?;
        let extra = generated_settings(&conf);
        let security = if dir.join(DYNSEC_FILE).is_file() {
            Security::Dynsec {
                config: read(DYNSEC_FILE)?,
                plugin: find_dynsec_plugin(&conf)?,
            }
        } else {
            Security::Files {
                passwd: read("password_file")?,
                acl: read("acl_file")?,
            }
        };
        Self::launch(security, &extra)
    }

    /// Starts Mosquitto on a config the caller writes for the port it is
    /// given (`conf(port, dir)`; `dir` is the broker's temp dir, where the
    /// harness's log goes): for a test that runs a deployment's own
    /// `mosquitto.conf` with only listener and paths adapted. The harness
    /// appends its logging (and `user root` when run as root, so 0600 files
    /// stay readable).
    pub fn start_with_config(
        conf: &dyn Fn(u16, &Path) -> String,
    ) -> anyhow::Result<MosquittoBroker> {
        let bin = find_mosquitto()?;
        let dir = tempfile::Builder::new()
            .prefix("amesh-mosquitto-")
            .tempdir()?;
        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let d = dir.path().display();
            let text = format!(
                "{}\n# Added by amesh-tests.\nuser root\nlog_dest file {d}/mosquitto.log\nlog_type all\nconnection_messages true\n",
                conf(port, dir.path())
            );
            write_private(&dir.path().join("mosquitto.conf"), &text)?;
            match spawn(&bin, dir.path(), port) {
                Ok(child) => {
                    return Ok(MosquittoBroker {
                        dir,
                        bin,
                        port,
                        child: Some(child),
                    });
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("mosquitto did not start")))
    }

    /// Writes the files and starts Mosquitto on a free port.
    fn launch(security: Security, extra_conf: &str) -> anyhow::Result<MosquittoBroker> {
        let bin = find_mosquitto()?;
        let dir = tempfile::Builder::new()
            .prefix("amesh-mosquitto-")
            .tempdir()?;
        let security_conf = security.write(dir.path())?;

        let mut last_err = None;
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            write_private(
                &dir.path().join("mosquitto.conf"),
                &config(dir.path(), port, &security_conf, extra_conf),
            )?;
            match spawn(&bin, dir.path(), port) {
                Ok(child) => {
                    return Ok(MosquittoBroker {
                        dir,
                        bin,
                        port,
                        child: Some(child),
                    });
                }
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow::anyhow!("mosquitto did not start")))
    }

    /// `tcp://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("tcp://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temp dir holding the config, password file, ACL and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The broker's log so far (for failure messages).
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }

    /// A `broker:` config for `user` on this broker (client id left to the
    /// default, so give each client of a test its own app name).
    pub fn broker_config(&self, user: &str, password: &str) -> BrokerConfig {
        BrokerConfig {
            broker_url: Some(self.url()),
            broker_username: Some(user.to_string()),
            broker_password: Some(password.to_string()),
            session_expiry_seconds: 3600,
            keep_alive_seconds: 20,
            ..BrokerConfig::default()
        }
    }

    /// Kills the broker (SIGKILL: clients see the connection drop, no
    /// DISCONNECT) and waits for it to exit. Idempotent.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            // Ignore "already exited".
            let _ = child.kill();
            child.wait().context("waiting for mosquitto to exit")?;
        }
        Ok(())
    }

    /// Stops the broker if running and starts it again on the same port
    /// with the same files. Sessions and retained messages are gone
    /// (`persistence false`), as after a crash.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop()?;
        self.spawn()
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        self.child = Some(spawn(&self.bin, self.dir.path(), self.port)?);
        Ok(())
    }
}

impl Drop for MosquittoBroker {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Starts `mosquitto -c {dir}/mosquitto.conf` and waits until `port`
/// accepts connections (or the process exits, or [`READY_TIMEOUT`]).
fn spawn(bin: &Path, dir: &Path, port: u16) -> anyhow::Result<Child> {
    let mut child = Command::new(bin)
        .arg("-c")
        .arg(dir.join("mosquitto.conf"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!(
                "mosquitto exited at start ({status}) on port {port}; log:\n{}",
                read_log(dir)
            );
        }
        // A connection whose own port is the listener's is TCP connecting
        // to itself (the port was free, so the kernel may pick it as the
        // source port), not Mosquitto: it would pass for ready while the
        // broker fails to bind. Seen once as a "connect failure" in a test.
        let accepted = TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .is_ok_and(|s| s.local_addr().is_ok_and(|a| a.port() != port));
        if accepted && child.try_wait()?.is_none() {
            return Ok(child);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "mosquitto did not accept connections on port {port} within {READY_TIMEOUT:?}; log:\n{}",
                read_log(dir)
            );
        }
        // No readiness signal to wait on: poll the port briefly.
        std::thread::sleep(READY_POLL);
    }
}

/// The settings of a generated `mosquitto.conf` that the harness does not
/// set itself: everything but comments, the listener, the security files
/// and plugin paths (the harness points those at its own copies).
fn generated_settings(conf: &str) -> String {
    const OWN: &[&str] = &[
        "listener",
        "per_listener_settings",
        "allow_anonymous",
        "password_file",
        "acl_file",
        "plugin",
        "plugin_opt_config_file",
        "set_tcp_nodelay",
    ];
    conf.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter(|l| !OWN.contains(&l.split_whitespace().next().unwrap_or("")))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("mosquitto.log")).unwrap_or_default()
}

fn config(dir: &Path, port: u16, security: &str, extra: &str) -> String {
    let d = dir.display();
    format!(
        "# Written by amesh-tests for one test run.\n\
         per_listener_settings false\n\
         listener {port} 127.0.0.1\n\
         allow_anonymous false\n\
         {security}\
         # Run as root so the 0600 files stay readable.\n\
         user root\n\
         persistence false\n\
         # Without it Nagle's algorithm adds ~40 ms per round trip.\n\
         set_tcp_nodelay true\n\
         log_dest file {d}/mosquitto.log\n\
         log_type error\n\
         log_type warning\n\
         log_type notice\n\
         log_type information\n\
         log_type subscribe\n\
         log_type unsubscribe\n\
         connection_messages true\n\
         log_timestamp true\n\
         {extra}\n"
    )
}

fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// The dynamic-security plugin: `$MOSQUITTO_DYNSEC_PLUGIN`, else the path
/// the generated `conf` names if it exists here, else the usual places.
fn find_dynsec_plugin(conf: &str) -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os("MOSQUITTO_DYNSEC_PLUGIN") {
        return Ok(PathBuf::from(p));
    }
    let generated = conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("plugin "))
        .map(|p| PathBuf::from(p.trim()));
    generated
        .chain(
            [
                "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
                "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
                "/usr/lib/mosquitto_dynamic_security.so",
                "/usr/local/lib/mosquitto_dynamic_security.so",
            ]
            .map(PathBuf::from),
        )
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "mosquitto_dynamic_security.so not found (set MOSQUITTO_DYNSEC_PLUGIN; Debian's mosquitto package ships it)"
            )
        })
}

fn find_mosquitto() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("MOSQUITTO_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let on_path = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join("mosquitto"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin/mosquitto"), PathBuf::from("/usr/local/sbin/mosquitto")])
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "mosquitto not found (set MOSQUITTO_BIN, put it on PATH, or `apt-get install mosquitto`)"
            )
        })
}
