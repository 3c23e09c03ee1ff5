//! A private PostgreSQL cluster for one test, so the test may stop and
//! start it: the machine's PostgreSQL is a service other people use and is
//! never restarted by a test.
//!
//! [`PgCluster::start`] runs `initdb` (trust auth, fsync off) in a temp dir
//! and `pg_ctl start` on a free loopback port with its socket in that dir.
//! PostgreSQL refuses to run as root, so as root both run as the `postgres`
//! account (`runuser`), which then owns the dir. The cluster is stopped
//! (immediate mode) when the value is dropped.
//!
//! The binaries come from `$PG_BIN_DIR`, else the newest
//! `/usr/lib/postgresql/*/bin` (Debian's layout), else `PATH`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// A running (or stopped) private cluster.
pub struct PgCluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres: bool,
    running: bool,
}

impl PgCluster {
    /// Whether `initdb` and `pg_ctl` are installed here.
    pub fn available() -> bool {
        bin_dir().is_some()
    }

    /// Creates and starts a cluster.
    pub fn start() -> anyhow::Result<PgCluster> {
        let bin = bin_dir().context("initdb not found (set PG_BIN_DIR)")?;
        let dir = tempfile::Builder::new().prefix("amesh-pg-").tempdir()?;
        // Root owns what it creates: then PostgreSQL runs as `postgres`.
        let as_postgres = is_root(dir.path());
        if as_postgres {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()?;
            anyhow::ensure!(status.success(), "chown of the cluster dir failed");
        }
        let port = crate::amesh_run::free_port();
        let mut cluster = PgCluster {
            dir,
            bin,
            port,
            as_postgres,
            running: false,
        };
        let data = cluster.data();
        cluster.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        cluster.start_again()?;
        Ok(cluster)
    }

    /// `postgres://postgres@127.0.0.1:{port}/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server at once (`-m immediate`: connections are cut, as
    /// when the host or the process dies).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if self.running {
            let data = self.data();
            self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"])?;
            self.running = false;
        }
        Ok(())
    }

    /// Starts the server again on the same port and data, and waits until
    /// it accepts connections.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        let data = self.data();
        let log = self.dir.path().join("postgres.log");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off",
            self.port,
            self.dir.path().display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                &data,
                "-l",
                &log.display().to_string(),
                "-o",
                &options,
                "-w",
                "-t",
                "30",
                "start",
            ],
        )
        .with_context(|| format!("log:\n{}", self.log()))?;
        self.running = true;
        Ok(())
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> anyhow::Result<()> {
        let exe = self.bin.join(tool);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .with_context(|| format!("running {}", exe.display()))?;
        if !out.status.success() {
            bail!(
                "{tool} {args:?} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Whether the test runs as root (owner of the file it just created).
fn is_root(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir)
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN_DIR") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|p| p.join("initdb").is_file() && p.join("pg_ctl").is_file())
}
