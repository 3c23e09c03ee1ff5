//! `amesh acl generate`: configs in, broker provisioning files out.
//!
//! Loads the configs, builds the [`AclModel`], gives every broker user
//! without a `broker_password` a random one, and hands the model to the
//! writer of the chosen format. Files are written mode 0600 (they hold
//! password hashes or passwords) by write-then-rename, so a broker never
//! reads a half-written ACL.

use std::fmt;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rand::Rng as _;
use rand::distr::Alphanumeric;

use super::model::{AclModel, Password};
use super::{mosquitto, mosquitto_dynsec, solace};
use crate::config;

/// Length of generated broker passwords (alphanumeric: ~190 bits).
const GENERATED_PASSWORD_LEN: usize = 32;

/// What `amesh acl generate` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Mosquitto with its dynamic-security plugin: dynamic-security.json
    /// (users with PBKDF2 hashes, each bound to its client id, and roles
    /// that also check subscriptions, `$share` groups included) and a
    /// mosquitto.conf snippet loading the plugin.
    #[value(name = "mosquitto", alias = "mosquitto-dynsec")]
    Mosquitto,
    /// Mosquitto without plugins: password_file ($7$ PBKDF2 hashes),
    /// acl_file (user blocks with topic read/write lines) and a
    /// mosquitto.conf snippet. Checks publishes and deliveries only.
    #[value(name = "mosquitto-aclfile")]
    MosquittoAclFile,
    /// Solace PubSub+: semp-plan.json (ordered SEMP v2 requests creating an
    /// ACL profile and a client username per component) and APPLY.md.
    #[value(name = "solace-semp")]
    SolaceSemp,
}

/// A password made by the generator, to show the operator once.
pub struct GeneratedPassword {
    pub username: String,
    pub password: Password,
}

impl fmt::Debug for GeneratedPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedPassword")
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// The outcome of one `generate`: what was written and what the operator
/// must know. Its `Debug` hides passwords; [`Report::print`] shows them.
#[derive(Debug)]
pub struct Report {
    pub format: Format,
    pub written: Vec<PathBuf>,
    /// Broker usernames provisioned, in config order.
    pub users: Vec<String>,
    /// Skipped apps and other remarks.
    pub notes: Vec<String>,
    /// Passwords generated for users whose configs had none.
    pub generated: Vec<GeneratedPassword>,
}

impl Report {
    /// Writes the summary for the operator, including generated passwords:
    /// this is the only time they are shown.
    ///
    /// # Errors
    /// Writing to `out` failed.
    pub fn print(&self, out: &mut dyn Write) -> io::Result<()> {
        let written: Vec<String> = self
            .written
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        writeln!(out, "wrote {}", written.join(", "))?;
        writeln!(
            out,
            "{} broker user(s): {}",
            self.users.len(),
            self.users.join(", ")
        )?;
        for note in &self.notes {
            writeln!(out, "note: {note}")?;
        }
        if !self.generated.is_empty() {
            let kept = match self.format {
                Format::Mosquitto => "only their hashes are in dynamic-security.json",
                Format::MosquittoAclFile => "only their hashes are in password_file",
                Format::SolaceSemp => "they are also in semp-plan.json until you delete it",
            };
            writeln!(
                out,
                "\nGenerated passwords for users without broker_password ({kept}).\n\
                 They are shown this once: store them now (e.g. in a secret store, passed to\n\
                 the configs as broker_password: ${{VAR}}).",
            )?;
            for g in &self.generated {
                writeln!(out, "{}: {}", g.username, g.password.expose())?;
            }
        }
        Ok(())
    }
}

/// Derives broker users and permissions from `files` and writes the
/// provisioning files of `format` into `out_dir` (created if missing).
///
/// # Errors
/// Config errors (all of them), model errors (missing usernames, shared
/// usernames), names the format cannot express, and I/O failures.
pub fn generate(format: Format, out_dir: &Path, files: &[PathBuf]) -> anyhow::Result<Report> {
    anyhow::ensure!(!files.is_empty(), "give at least one config file");
    let cfg = config::load_files(files).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut model = AclModel::from_config(&cfg).map_err(|e| anyhow::anyhow!("{e}"))?;
    let generated = fill_passwords(&mut model);
    let configs: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();

    create_private_dir(out_dir)?;
    let dir = std::fs::canonicalize(out_dir)
        .with_context(|| format!("resolving {}", out_dir.display()))?;
    let outputs: Vec<(&str, String)> = match format {
        Format::Mosquitto => vec![
            (
                mosquitto_dynsec::DYNSEC_FILE,
                mosquitto_dynsec::dynsec_json(&model, &configs)?,
            ),
            (
                mosquitto_dynsec::CONF_FILE,
                mosquitto_dynsec::conf_snippet(&dir, &model),
            ),
        ],
        Format::MosquittoAclFile => vec![
            (mosquitto::PASSWORD_FILE, mosquitto::password_file(&model)?),
            (mosquitto::ACL_FILE, mosquitto::acl_file(&model, &configs)?),
            (mosquitto::CONF_FILE, mosquitto::conf_snippet(&dir, &model)),
        ],
        Format::SolaceSemp => vec![
            (
                solace::PLAN_FILE,
                solace::to_json(&solace::plan(&model, &configs)?),
            ),
            (solace::APPLY_FILE, solace::apply_md()),
        ],
    };
    let mut written = Vec::new();
    for (name, text) in outputs {
        let path = dir.join(name);
        write_private(&path, &text)?;
        written.push(path);
    }
    Ok(Report {
        format,
        written,
        users: model
            .principals
            .iter()
            .map(|p| p.username.clone())
            .collect(),
        notes: notes(format, &model),
        generated,
    })
}

/// Skipped apps, and accounts whose client id the output could not bind.
fn notes(format: Format, model: &AclModel) -> Vec<String> {
    let mut notes: Vec<String> = model
        .skipped
        .iter()
        .map(|s| format!("skipped {}: {}", s.app, s.reason))
        .collect();
    match format {
        Format::MosquittoAclFile => notes.push(
            "acl_file checks publishes and deliveries only: any account may still join another agent's \
             $share group or connect with another account's client id; --format mosquitto does not allow either"
                .to_string(),
        ),
        Format::Mosquitto | Format::SolaceSemp => {
            for p in model.principals.iter().filter(|p| p.bound_client_id().is_none()) {
                let ids: Vec<&str> = p.client_ids.iter().map(String::as_str).collect();
                if ids.is_empty() {
                    notes.push(format!(
                        "broker user {:?} runs as replicas ({} is set), each with its own client id, so it is \
                         not bound to one and could connect with another account's client id",
                        p.username,
                        crate::broker::REPLICA_ID_ENV
                    ));
                    continue;
                }
                notes.push(format!(
                    "broker user {:?} connects with several client ids ({}), so it is not bound to one and \
                     could connect with another account's client id; give each replica its own broker_username",
                    p.username,
                    ids.join(", ")
                ));
            }
        }
    }
    notes
}

/// Gives each principal without a configured password a random one.
fn fill_passwords(model: &mut AclModel) -> Vec<GeneratedPassword> {
    let mut generated = Vec::new();
    for p in &mut model.principals {
        if p.password.is_none() {
            let password = Password::new(random_password());
            p.password = Some(password.clone());
            generated.push(GeneratedPassword {
                username: p.username.clone(),
                password,
            });
        }
    }
    generated
}

fn random_password() -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(GENERATED_PASSWORD_LEN)
        .map(char::from)
        .collect()
}

/// Creates `dir` (mode 0700 on Unix when it is new).
fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Writes `text` to `path` with mode 0600: to a temp file first, renamed
/// over `path`, so readers see the old or the new file, never a part.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("amesh-tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut file = options.open(&tmp)?;
        // A leftover temp file keeps its old mode: force 0600.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = r#"
apps:
  - name: web
    app_module: gateway
    broker: {broker_url: "tcp://localhost:1883", broker_username: gw-user, broker_password: gw-secret}
    app_config: {namespace: acl/test, gateway_id: web-1}
  - name: a
    app_module: agent
    broker: {broker_url: "tcp://localhost:1883", broker_username: a-user}
    app_config: {namespace: acl/test, agent_name: a}
  - name: dev
    app_module: agent
    broker: {dev_mode: true}
    app_config: {namespace: acl/test, agent_name: dev}
"#;

    fn setup() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("mesh.yaml");
        std::fs::write(&cfg, YAML).unwrap();
        (dir, cfg)
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn mosquitto_dynsec_files_are_private_and_hold_only_hashes() {
        let (dir, cfg) = setup();
        let out = dir.path().join("out");
        let report = generate(Format::Mosquitto, &out, &[cfg]).unwrap();
        assert_eq!(report.written.len(), 2);
        #[cfg(unix)]
        for f in &report.written {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
        let generated = report.generated[0].password.expose().to_string();
        let text = std::fs::read_to_string(out.join("dynamic-security.json")).unwrap();
        assert!(!text.contains(&generated) && !text.contains("gw-secret"));
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let client = &json["clients"][1];
        assert_eq!(client["username"], "a-user");
        assert_eq!(client["clientid"], "a-user-a");
        assert!(super::super::passwd::verify_parts(
            &generated,
            client["salt"].as_str().unwrap(),
            client["password"].as_str().unwrap(),
            101
        ));
        let mut printed = Vec::new();
        report.print(&mut printed).unwrap();
        let printed = String::from_utf8(printed).unwrap();
        assert!(printed.contains("dynamic-security.json"), "{printed}");
        assert!(
            printed.contains(&format!("a-user: {generated}")),
            "{printed}"
        );
    }

    #[test]
    fn mosquitto_aclfile_files_are_private_and_generated_passwords_reported_once() {
        let (dir, cfg) = setup();
        let out = dir.path().join("out");
        let report = generate(Format::MosquittoAclFile, &out, &[cfg]).unwrap();
        assert_eq!(report.users, vec!["gw-user", "a-user"]);
        assert_eq!(report.written.len(), 3);
        #[cfg(unix)]
        for f in &report.written {
            assert_eq!(mode(f), 0o600, "{}", f.display());
        }
        assert_eq!(report.generated.len(), 1);
        let generated = report.generated[0].password.expose().to_string();
        assert_eq!(report.generated[0].username, "a-user");
        assert!(generated.len() >= 24);
        assert!(
            report.notes[0].contains("mesh.yaml:dev"),
            "{:?}",
            report.notes
        );
        assert!(report.notes[1].contains("$share"), "{:?}", report.notes);

        let passwd = std::fs::read_to_string(out.join("password_file")).unwrap();
        let lines: Vec<&str> = passwd.lines().collect();
        assert!(super::super::passwd::verify_line(lines[0], "gw-secret"));
        assert!(super::super::passwd::verify_line(lines[1], &generated));

        let dbg = format!("{report:?}");
        assert!(!dbg.contains(&generated), "{dbg}");
        let mut printed = Vec::new();
        report.print(&mut printed).unwrap();
        let printed = String::from_utf8(printed).unwrap();
        assert!(
            printed.contains(&format!("a-user: {generated}")),
            "{printed}"
        );
        assert!(!printed.contains("gw-secret"), "{printed}");

        // Regenerating overwrites and keeps files private.
        generate(
            Format::MosquittoAclFile,
            &out,
            &[dir.path().join("mesh.yaml")],
        )
        .unwrap();
        #[cfg(unix)]
        assert_eq!(mode(&out.join("acl_file")), 0o600);
    }

    #[test]
    fn solace_plan_carries_config_and_generated_passwords() {
        let (dir, cfg) = setup();
        let out = dir.path().join("semp");
        let report = generate(Format::SolaceSemp, &out, &[cfg]).unwrap();
        let plan: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("semp-plan.json")).unwrap())
                .unwrap();
        let usernames: Vec<_> = plan["requests"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["path"].as_str().unwrap().ends_with("/clientUsernames"))
            .map(|r| {
                (
                    r["body"]["clientUsername"].clone(),
                    r["body"]["password"].clone(),
                )
            })
            .collect();
        assert_eq!(usernames[0], ("gw-user".into(), "gw-secret".into()));
        assert_eq!(
            usernames[1].1,
            serde_json::Value::from(report.generated[0].password.expose())
        );
        assert!(out.join("APPLY.md").is_file());
    }

    #[test]
    fn config_errors_are_reported_with_the_app() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("bad.yaml");
        std::fs::write(
            &cfg,
            "apps:\n  - name: lonely\n    app_module: agent\n    broker: {broker_url: \"tcp://h:1883\"}\n    app_config: {namespace: ns, agent_name: lonely}\n",
        )
        .unwrap();
        let err = generate(Format::Mosquitto, &dir.path().join("out"), &[cfg]).unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("bad.yaml:lonely"), "{msg}");
        assert!(msg.contains("broker_username"), "{msg}");
        assert!(!dir.path().join("out").exists());
    }
}
