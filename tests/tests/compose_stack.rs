//! The top-level `docker-compose.yml`, run without a container engine: its
//! services start as local processes from the file's own commands, configs
//! and environment, and the whole flow goes through the gateway — a user
//! asks in words, the demo model picks the demo provider's OAuth tool, the
//! user authorizes at the demo provider, the answer arrives. So the compose
//! file cannot drift from what is tested.
//!
//! What stands in for Docker, and nothing more:
//! - `image: amesh:dev` services run `target/debug/amesh` with the service's
//!   `command` and only its `environment` (compose's `${VAR:-default}`
//!   resolved as with an empty `.env`);
//! - the `mosquitto` service runs the local Mosquitto on the service's own
//!   config file (listener moved to a free loopback port, log added);
//! - the `postgres` service is the machine's PostgreSQL (`AMESH_TEST_PG_URL`,
//!   default `postgres://postgres@127.0.0.1:5432/test`) with the databases
//!   its init script creates, under names unique to the run;
//! - a mount's container path is a local directory: a bind mount's source,
//!   or a temp dir per named volume (shared between services, as volumes are);
//! - `service:port` and published `localhost:port` addresses become
//!   127.0.0.1 and a free port, which the service is told through its own
//!   `--port` argument or `*_PORT` variable; `0.0.0.0` binds become 127.0.0.1;
//! - `depends_on` is honoured in order: completed one-shots must exit 0,
//!   healthy services must pass their healthcheck (`curl` URLs fetched,
//!   `nc -z` ports connected).
//!
//! Needs `mosquitto` and PostgreSQL; without PostgreSQL the test is skipped
//! with a message, unless `CI=true`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use amesh_demo::consent_as;
use amesh_runtime::broker::{Broker, DevBus};
use amesh_tests::amesh_bin::{amesh, workspace_root};
use amesh_tests::mosquitto::MosquittoBroker;
use amesh_tests::stack::SseReader;
use anyhow::{Context, bail};
use serde_json::{Value as Json, json};
use yaml_serde::Value;

const START_TIMEOUT: Duration = Duration::from_secs(30);
const FLOW_TIMEOUT: Duration = Duration::from_secs(60);

/// One service of the compose file, interpolated and merged.
#[derive(Debug, Clone)]
struct Service {
    name: String,
    image: Option<String>,
    command: Vec<String>,
    environment: BTreeMap<String, String>,
    /// (source, container path): a bind mount's source starts with `.` or `/`.
    volumes: Vec<(String, String)>,
    /// (host port, container port) of `ports:`.
    ports: Vec<(u16, u16)>,
    /// (service, condition).
    depends_on: Vec<(String, String)>,
    healthcheck: Vec<String>,
}

/// Compose's interpolation with an empty environment: `${VAR:-default}`
/// and `${VAR-default}` give the default, `${VAR}` and `$VAR` nothing,
/// `$$` a `$`.
fn interpolate(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body.find('}').expect("unclosed ${ in the compose file");
            let inner = &body[..end];
            if let Some((_, default)) = inner.split_once(":-").or_else(|| inner.split_once('-')) {
                out.push_str(default);
            }
            rest = &body[end + 1..];
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            rest = &after[end..];
        }
    }
    out.push_str(rest);
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => interpolate(s),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => String::new(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        None => Vec::new(),
        Some(Value::Sequence(items)) => items.iter().map(scalar).collect(),
        Some(other) => vec![scalar(other)],
    }
}

fn load_compose(path: &Path) -> Vec<Service> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut doc: Value = yaml_serde::from_str(&text).expect("docker-compose.yml parses");
    doc.apply_merge().expect("merge keys");
    let services = doc["services"].as_mapping().expect("services:");
    services
        .iter()
        .map(|(name, s)| {
            let name = scalar(name);
            let mut environment = BTreeMap::new();
            match s.get("environment") {
                Some(Value::Mapping(m)) => {
                    for (k, v) in m {
                        environment.insert(scalar(k), scalar(v));
                    }
                }
                Some(Value::Sequence(items)) => {
                    for item in items {
                        // A bare NAME passes the host's value: unset here.
                        if let Some((k, v)) = scalar(item).split_once('=') {
                            environment.insert(k.to_string(), v.to_string());
                        }
                    }
                }
                _ => {}
            }
            let volumes = strings(s.get("volumes"))
                .into_iter()
                .map(|v| {
                    let mut parts = v.split(':');
                    let src = parts.next().unwrap().to_string();
                    let dst = parts.next().expect("volume without a target").to_string();
                    (src, dst)
                })
                .collect();
            let ports = strings(s.get("ports"))
                .into_iter()
                .map(|p| {
                    let parts: Vec<&str> = p.split(':').collect();
                    let n = parts.len();
                    (
                        parts[n - 2].parse().expect("host port"),
                        parts[n - 1].parse().expect("container port"),
                    )
                })
                .collect();
            let depends_on = match s.get("depends_on") {
                Some(Value::Mapping(m)) => m
                    .iter()
                    .map(|(k, v)| {
                        let cond = v
                            .get("condition")
                            .map(scalar)
                            .unwrap_or_else(|| "service_started".into());
                        (scalar(k), cond)
                    })
                    .collect(),
                Some(Value::Sequence(items)) => items
                    .iter()
                    .map(|k| (scalar(k), "service_started".into()))
                    .collect(),
                _ => Vec::new(),
            };
            let healthcheck = s
                .get("healthcheck")
                .map(|h| strings(h.get("test")))
                .unwrap_or_default();
            Service {
                name,
                image: s.get("image").map(scalar),
                command: strings(s.get("command")),
                environment,
                volumes,
                ports,
                depends_on,
                healthcheck,
            }
        })
        .collect()
}

/// Services in an order that starts each after what it depends on.
fn start_order(services: &[Service]) -> Vec<String> {
    fn visit(
        name: &str,
        by: &HashMap<&str, &Service>,
        out: &mut Vec<String>,
        seen: &mut Vec<String>,
    ) {
        if out.iter().any(|n| n == name) {
            return;
        }
        assert!(
            !seen.iter().any(|n| n == name),
            "depends_on cycle at {name}"
        );
        seen.push(name.to_string());
        let s = by
            .get(name)
            .unwrap_or_else(|| panic!("depends_on names unknown service {name}"));
        for (dep, _) in &s.depends_on {
            visit(dep, by, out, seen);
        }
        out.push(name.to_string());
    }
    let by: HashMap<&str, &Service> = services.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut out = Vec::new();
    for s in services {
        visit(&s.name, &by, &mut out, &mut Vec::new());
    }
    out
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn psql(url: &str, sql: &str) -> anyhow::Result<()> {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!("psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// A running service's process; killed on drop.
struct Proc {
    name: String,
    child: Child,
    log: PathBuf,
    /// A one-shot that exited 0, as its dependents required.
    completed: bool,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The stack as it runs here.
struct Local {
    root: PathBuf,
    tmp: tempfile::TempDir,
    services: Vec<Service>,
    /// (service, container port) -> local port.
    ports: HashMap<(String, u16), u16>,
    /// Published host port -> local port.
    published: HashMap<u16, u16>,
    /// Database name in the compose file -> the run's own.
    databases: HashMap<String, String>,
    pg_admin: String,
    procs: Vec<Proc>,
    broker: Option<MosquittoBroker>,
}

impl Drop for Local {
    fn drop(&mut self) {
        // Agents first (they hold connections), then drop the databases.
        self.procs.clear();
        for db in self.databases.values() {
            let _ = psql(
                &self.pg_admin,
                &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
            );
        }
    }
}

impl Local {
    fn service(&self, name: &str) -> &Service {
        self.services.iter().find(|s| s.name == name).unwrap()
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        for p in &self.procs {
            let log = std::fs::read_to_string(&p.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            out.push_str(&format!("\n--- {} (last lines) ---\n", p.name));
            for l in tail.iter().rev() {
                out.push_str(l);
                out.push('\n');
            }
        }
        if let Some(b) = &self.broker {
            out.push_str("\n--- mosquitto ---\n");
            out.push_str(&b.log());
        }
        out
    }

    /// The local directory for a service's container path, if mounted.
    fn mount_for(&self, svc: &Service, path: &str) -> Option<String> {
        let mut best: Option<(&str, String)> = None;
        for (src, dst) in &svc.volumes {
            let under = path == dst || path.starts_with(&format!("{dst}/"));
            if !under || best.as_ref().is_some_and(|(d, _)| d.len() >= dst.len()) {
                continue;
            }
            let local = if src.starts_with('.') || src.starts_with('/') {
                self.root.join(src).display().to_string()
            } else {
                let dir = self.tmp.path().join("volumes").join(src);
                std::fs::create_dir_all(&dir).unwrap();
                dir.display().to_string()
            };
            best = Some((dst, local));
        }
        best.map(|(dst, local)| format!("{local}{}", &path[dst.len()..]))
    }

    /// A value of a service's command or environment, as it reads here.
    fn localize(&self, svc: &Service, value: &str) -> String {
        let mut v = value.to_string();
        // Container paths.
        if v.starts_with('/')
            && let Some(local) = self.mount_for(svc, &v)
        {
            v = local;
        }
        // Database URLs of the postgres service.
        if let Ok(mut url) = url::Url::parse(&v)
            && url.scheme().starts_with("postgres")
            && url.host_str() == Some("postgres")
        {
            let db = url.path().trim_start_matches('/').to_string();
            let own = self.databases.get(&db).unwrap_or_else(|| {
                panic!("{value}: database {db} is not created by the init script")
            });
            let admin = url::Url::parse(&self.pg_admin).unwrap();
            url.set_host(admin.host_str()).unwrap();
            url.set_port(admin.port()).unwrap();
            url.set_username(admin.username()).unwrap();
            url.set_password(admin.password()).unwrap();
            url.set_path(&format!("/{own}"));
            return url.to_string();
        }
        // Service addresses and published ports.
        for ((name, cport), local) in &self.ports {
            v = v.replace(&format!("{name}:{cport}"), &format!("127.0.0.1:{local}"));
        }
        for (host, local) in &self.published {
            v = v.replace(&format!("localhost:{host}"), &format!("127.0.0.1:{local}"));
        }
        if v == "0.0.0.0" {
            "127.0.0.1".into()
        } else {
            v
        }
    }

    /// The local port a service listens on for a container port.
    fn port_of(&self, svc: &str, cport: u16) -> u16 {
        self.ports[&(svc.to_string(), cport)]
    }

    fn command(&self, svc: &Service) -> Vec<String> {
        let mut out = Vec::new();
        let mut prev = "";
        for arg in &svc.command {
            let mut a = self.localize(svc, arg);
            if prev == "--port"
                && let Ok(c) = arg.parse::<u16>()
            {
                a = self.port_of(&svc.name, c).to_string();
            }
            out.push(a);
            prev = arg;
        }
        out
    }

    fn environment(&self, svc: &Service) -> BTreeMap<String, String> {
        svc.environment
            .iter()
            .map(|(k, v)| {
                let own_port = k
                    .ends_with("_PORT")
                    .then(|| v.parse::<u16>().ok())
                    .flatten()
                    .and_then(|c| self.ports.get(&(svc.name.clone(), c)));
                let v = match own_port {
                    Some(p) => p.to_string(),
                    None => self.localize(svc, v),
                };
                (k.clone(), v)
            })
            .collect()
    }

    fn spawn_amesh(&mut self, name: &str) -> anyhow::Result<()> {
        let svc = self.service(name).clone();
        let args = self.command(&svc);
        let env = self.environment(&svc);
        let log = self.tmp.path().join(format!("{name}.log"));
        let file = File::create(&log)?;
        let child = Command::new(amesh())
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(&env)
            .current_dir(self.tmp.path())
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("starting {name}: amesh {args:?}"))?;
        self.procs.push(Proc {
            name: name.to_string(),
            child,
            log,
            completed: false,
        });
        Ok(())
    }

    fn start_mosquitto(&mut self, name: &str) -> anyhow::Result<()> {
        let svc = self.service(name).clone();
        let conf_path = svc
            .command
            .iter()
            .skip_while(|a| *a != "-c")
            .nth(1)
            .context("mosquitto command without -c")?;
        let local = self
            .mount_for(&svc, conf_path)
            .context("mosquitto config not mounted")?;
        let conf = std::fs::read_to_string(&local)?;
        let mut cport = None;
        let mut lines = Vec::new();
        for line in conf.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["listener", port, ..] => {
                    cport = Some(port.parse::<u16>()?);
                    lines.push(None);
                }
                [key, path] if path.starts_with('/') => {
                    let p = self
                        .mount_for(&svc, path)
                        .with_context(|| format!("{key} {path} is not on a mounted volume"))?;
                    lines.push(Some(format!("{key} {p}")));
                }
                _ => lines.push(Some(line.to_string())),
            }
        }
        let cport = cport.context("no listener in the mosquitto config")?;
        let broker = MosquittoBroker::start_with_config(&|port, _| {
            lines
                .iter()
                .map(|l| match l {
                    Some(l) => format!("{l}\n"),
                    None => format!("listener {port} 127.0.0.1\n"),
                })
                .collect()
        })?;
        self.ports.insert((name.to_string(), cport), broker.port());
        self.broker = Some(broker);
        Ok(())
    }

    /// Runs a service's healthcheck until it passes.
    async fn wait_healthy(&mut self, name: &str) -> anyhow::Result<()> {
        let test = self.service(name).healthcheck.clone();
        let deadline = Instant::now() + START_TIMEOUT;
        let http = reqwest::Client::new();
        loop {
            self.check_running()?;
            let ok = if let Some(url) = test.iter().find(|a| a.starts_with("http")) {
                // curl inside the container: 127.0.0.1 is the service itself.
                let url = url::Url::parse(url)?;
                let cport = url.port().context("healthcheck URL without a port")?;
                let mut local = url.clone();
                local.set_port(Some(self.port_of(name, cport))).unwrap();
                matches!(http.get(local).send().await, Ok(r) if r.status().is_success())
            } else if let Some(cmd) = test.iter().find(|a| a.contains("nc -z")) {
                let cport: u16 = cmd.split_whitespace().last().unwrap().parse()?;
                TcpStream::connect((Ipv4Addr::LOCALHOST, self.port_of(name, cport))).is_ok()
            } else if test.iter().any(|a| a.contains("pg_isready")) {
                true // the machine's PostgreSQL, checked at start
            } else {
                bail!("{name}: no healthcheck the harness can run: {test:?}");
            };
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{name} not healthy within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Fails when a service that should be running has exited.
    fn check_running(&mut self) -> anyhow::Result<()> {
        for p in self.procs.iter_mut().filter(|p| !p.completed) {
            if let Some(status) = p.child.try_wait()? {
                bail!("{} exited ({status})", p.name);
            }
        }
        Ok(())
    }

    async fn wait_exit_ok(&mut self, name: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let p = self
            .procs
            .iter_mut()
            .find(|p| p.name == name)
            .with_context(|| format!("{name} was not started"))?;
        if p.completed {
            return Ok(());
        }
        loop {
            if let Some(status) = p.child.try_wait()? {
                if status.success() {
                    p.completed = true;
                    return Ok(());
                }
                bail!("{name} exited with {status}");
            }
            if Instant::now() > deadline {
                bail!("{name} did not finish within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn start(&mut self) -> anyhow::Result<()> {
        for name in start_order(&self.services) {
            let svc = self.service(&name).clone();
            for (dep, cond) in &svc.depends_on {
                match cond.as_str() {
                    "service_completed_successfully" => self.wait_exit_ok(dep).await?,
                    "service_healthy" => self.wait_healthy(dep).await?,
                    _ => {}
                }
            }
            match svc.image.as_deref().unwrap_or_default() {
                "amesh:dev" => self.spawn_amesh(&name)?,
                i if i.starts_with("eclipse-mosquitto") => self.start_mosquitto(&name)?,
                i if i.starts_with("postgres") => {} // the machine's PostgreSQL
                other => bail!("{name}: no local stand-in for image {other}"),
            }
        }
        Ok(())
    }
}

/// The compose file's stack, set up to run here (nothing started yet), or
/// `None` when PostgreSQL is not available outside CI.
fn local_stack() -> Option<Local> {
    let root = workspace_root();
    let services = load_compose(&root.join("docker-compose.yml"));
    let pg_admin = std::env::var("AMESH_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    if let Err(e) = psql(&pg_admin, "SELECT 1") {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("PostgreSQL at {pg_admin} is needed under CI=true: {e:#}");
        }
        eprintln!("skipped: PostgreSQL at {pg_admin} not available ({e:#})");
        return None;
    }
    let mut local = Local {
        root,
        tmp: tempfile::tempdir().unwrap(),
        services,
        ports: HashMap::new(),
        published: HashMap::new(),
        databases: HashMap::new(),
        pg_admin,
        procs: Vec::new(),
        broker: None,
    };
    // Ports: published ones, and every `service:port` any value names.
    let names: Vec<String> = local.services.iter().map(|s| s.name.clone()).collect();
    for svc in local.services.clone() {
        for (host, cport) in &svc.ports {
            let l = *local
                .ports
                .entry((svc.name.clone(), *cport))
                .or_insert_with(free_port);
            local.published.insert(*host, l);
        }
        let values = svc.command.iter().chain(svc.environment.values());
        for v in values {
            for n in &names {
                for (i, _) in v.match_indices(&format!("{n}:")) {
                    let digits: String = v[i + n.len() + 1..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect();
                    let before_ok =
                        i == 0 || !v[..i].ends_with(|c: char| c.is_alphanumeric() || c == '-');
                    if let (Ok(p), true) = (digits.parse::<u16>(), before_ok)
                        && n != "mosquitto"
                        && n != "postgres"
                    {
                        local.ports.entry((n.clone(), p)).or_insert_with(free_port);
                    }
                }
            }
        }
    }
    // Databases: those the postgres service's init scripts create.
    let run = uuid::Uuid::new_v4().simple().to_string();
    let pg = local
        .services
        .iter()
        .find(|s| {
            s.image
                .as_deref()
                .is_some_and(|i| i.starts_with("postgres"))
        })
        .expect("a postgres service")
        .clone();
    for (src, dst) in &pg.volumes {
        if dst.starts_with("/docker-entrypoint-initdb.d") && src.ends_with(".sql") {
            let sql = std::fs::read_to_string(local.root.join(src)).unwrap();
            for line in sql.lines() {
                let words: Vec<&str> = line.split_whitespace().collect();
                if let ["CREATE", "DATABASE", name, ..] = words.as_slice() {
                    let name = name.trim_end_matches(';').to_string();
                    let own = format!("compose_{name}_{}", &run[..12]);
                    psql(&local.pg_admin, &format!("CREATE DATABASE {own}")).unwrap();
                    local.databases.insert(name, own);
                }
            }
        }
    }
    assert!(
        !local.databases.is_empty(),
        "the init script creates no database"
    );
    Some(local)
}

async fn login_cookie(http: &reqwest::Client, gw: &str, token: &str) -> anyhow::Result<String> {
    let login = http
        .post(format!("{gw}/api/v1/auth/login"))
        .json(&json!({ "token": token }))
        .send()
        .await?
        .error_for_status()?;
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .context("login set no cookie")?;
    Ok(cookie.to_string())
}

async fn wait_for_agents(
    http: &reqwest::Client,
    gw: &str,
    token: &str,
    agents: &[&str],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(r) = http
            .get(format!("{gw}/api/v1/agents"))
            .bearer_auth(token)
            .send()
            .await
            && let Ok(v) = r.json::<Json>().await
        {
            let listed: Vec<&str> = v["agents"]
                .as_array()
                .map(|a| a.iter().filter_map(|c| c["name"].as_str()).collect())
                .unwrap_or_default();
            if agents.iter().all(|a| listed.contains(a)) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("agents {agents:?} not listed by the gateway within {START_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asks `agent` in words as the token's user; authorizes at the demo
/// provider as `user` when prompted. Returns the final task and the
/// authorization URL of the prompt, if one came.
async fn ask(
    http: &reqwest::Client,
    gw: &str,
    token: &str,
    user: &str,
    agent: &str,
    text: &str,
) -> anyhow::Result<(Json, Option<url::Url>)> {
    let resp = http
        .post(format!("{gw}/api/v1/message:stream"))
        .bearer_auth(token)
        .json(&json!({ "agent_name": agent, "text": text }))
        .send()
        .await?
        .error_for_status()?;
    let mut events = SseReader::new(resp);
    let mut prompted = None;
    while let Some(ev) = events.next_event().await? {
        match ev.event.as_str() {
            "task" => return Ok((ev.data, prompted)),
            "error" => bail!("error event: {}", ev.data),
            "status" if ev.data["status"]["state"] == "auth-required" => {
                let url: url::Url = ev.data["status"]["message"]["parts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find_map(|p| p["data"]["authorization_url"].as_str())
                    .with_context(|| format!("prompt without a URL: {}", ev.data))?
                    .parse()?;
                let callback = consent_as(&url, user, true).await?;
                prompted = Some(url);
                anyhow::ensure!(
                    callback
                        .as_str()
                        .starts_with(&format!("{gw}/api/v1/auth/tool/callback")),
                    "the provider sends the browser back to {callback}, not the gateway {gw}"
                );
                let cookie = login_cookie(http, gw, token).await?;
                let page = http.get(callback).header("cookie", cookie).send().await?;
                anyhow::ensure!(page.status() == 200, "callback answered {}", page.status());
            }
            _ => {}
        }
    }
    bail!("stream ended without a final task")
}

fn answer(task: &Json) -> String {
    task["artifacts"][0]["parts"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn the_compose_file_parses_into_the_expected_services() {
    let services = load_compose(&workspace_root().join("docker-compose.yml"));
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    for expected in [
        "acl",
        "mosquitto",
        "postgres",
        "demo-provider",
        "gateway",
        "assistant",
        "helper",
    ] {
        assert!(
            names.contains(&expected),
            "{expected} missing from {names:?}"
        );
    }
    let order = start_order(&services);
    let at = |n: &str| order.iter().position(|o| o == n).unwrap();
    assert!(
        at("acl") < at("mosquitto") && at("mosquitto") < at("gateway"),
        "{order:?}"
    );
    let acl = services.iter().find(|s| s.name == "acl").unwrap();
    assert_eq!(acl.command[..2], ["acl", "generate"]);
    let gw = services.iter().find(|s| s.name == "gateway").unwrap();
    assert_eq!(
        gw.environment["NAMESPACE"], "amesh/compose",
        "${{VAR:-default}} resolved"
    );
    assert_eq!(
        gw.environment["BROKER_URL"], "tcp://mosquitto:1883",
        "merged from x-amesh-env"
    );
    assert_eq!(interpolate("a${X:-b}c$$d${Y}e"), "abc$de");
    // Browsers open the demo provider's consent page on its published port.
    let demo = services.iter().find(|s| s.name == "demo-provider").unwrap();
    let arg = |name: &str| {
        let i = demo.command.iter().position(|a| a == name).unwrap();
        demo.command[i + 1].clone()
    };
    let port: u16 = arg("--port").parse().unwrap();
    let host_port = demo
        .ports
        .iter()
        .find(|(_, c)| *c == port)
        .map(|(h, _)| *h)
        .expect("the demo provider's port is published");
    assert_eq!(
        arg("--browser-url"),
        format!("http://localhost:{host_port}")
    );
    assert_eq!(arg("--public-url"), format!("http://demo-provider:{port}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_compose_stack_runs_the_whole_flow_through_the_gateway() {
    let Some(mut stack) = local_stack() else {
        return;
    };
    if let Err(e) = stack.start().await {
        panic!("starting the stack: {e:#}\n{}", stack.logs());
    }
    // The mosquitto service runs on what the acl service generated.
    let acl_dir = stack.tmp.path().join("volumes/broker-acl");
    let acl_file = std::fs::read_to_string(acl_dir.join("acl_file")).expect("acl_file generated");
    for user in ["user gateway", "user assistant", "user helper"] {
        assert!(acl_file.contains(user), "{user} missing:\n{acl_file}");
    }
    // ... and enforces them: a broker user with another password is refused.
    {
        let broker = stack.broker.as_ref().unwrap();
        let mut cfg = broker.broker_config("gateway", "not-the-compose-password");
        cfg.client_id = Some("compose-intruder".into());
        let refused = Broker::connect(&cfg, "intruder", &DevBus::new()).await;
        assert!(refused.is_err(), "the compose broker took a wrong password");
    }

    let gw_svc = stack.service("gateway").clone();
    let gw = format!("http://127.0.0.1:{}", stack.port_of("gateway", 8000));
    let token = gw_svc.environment["AMESH_USER_TOKEN"].clone();
    let user = gw_svc.environment["AMESH_USER_ID"].clone();
    let demo = format!("http://127.0.0.1:{}", stack.published[&9100]);
    let http = reqwest::Client::new();
    let flow = async {
        wait_for_agents(&http, &gw, &token, &["assistant", "helper"]).await?;
        // The demo model picks the OAuth tool from the words; the user
        // authorizes at the demo provider; the paused task goes on.
        let (task, prompted) = ask(
            &http,
            &gw,
            &token,
            &user,
            "assistant",
            "who am I at the demo provider?",
        )
        .await?;
        let prompt = prompted.with_context(|| format!("no authorization prompt: {task}"))?;
        anyhow::ensure!(
            prompt.as_str().starts_with(&format!("{demo}/authorize?")),
            "the consent page is not on the demo provider's published port {demo}: {prompt}"
        );
        anyhow::ensure!(task["status"]["state"] == "completed", "{task}");
        let text = answer(&task);
        anyhow::ensure!(text.contains(&format!("You are {user}")), "answer: {text}");
        // Again: the credential stored in PostgreSQL is used, no prompt.
        let (task, prompted) = ask(
            &http,
            &gw,
            &token,
            &user,
            "assistant",
            "who am I at the demo provider?",
        )
        .await?;
        anyhow::ensure!(prompted.is_none(), "prompted again: {task}");
        anyhow::ensure!(answer(&task).contains(&format!("You are {user}")), "{task}");
        // The second agent answers too.
        let (task, _) = ask(&http, &gw, &token, &user, "helper", "what time is it?").await?;
        anyhow::ensure!(task["status"]["state"] == "completed", "{task}");
        anyhow::Ok(())
    };
    match tokio::time::timeout(FLOW_TIMEOUT, flow).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("{e:#}\n{}", stack.logs()),
        Err(_) => panic!("the flow took over {FLOW_TIMEOUT:?}\n{}", stack.logs()),
    }
    // The credential really is in the assistant's own database.
    let db = &stack.databases["assistant"];
    let mut url = url::Url::parse(&stack.pg_admin).unwrap();
    url.set_path(&format!("/{db}"));
    let out = Command::new("psql")
        .args([
            url.as_str(),
            "-tA",
            "-c",
            "SELECT count(*) FROM credentials WHERE deleted_at IS NULL",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
}
