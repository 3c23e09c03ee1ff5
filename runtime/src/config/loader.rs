//! Loads YAML config files into a typed [`LoadedConfig`].
//!
//! Order of work: parse each file into a positioned tree (includes, anchors,
//! merges, `${VAR}`), type the top level and then each app on its own (so
//! one broken app does not hide the errors of the next), and finally run
//! the semantic checks of `validate.rs` across every app of every file.
//! Nothing stops at the first error: the caller gets all of them.

use std::path::Path;

use super::de::from_node;
use super::error::{ConfigError, ConfigErrors};
use super::model::{
    AgentConfig, AppKind, AppModule, AppSpec, FileConfig, GatewayConfig, LoadedConfig, RawApp,
};
use super::node::{Entry, Node, NodeValue};
use super::paths;
use super::scalar::EnvLookup;
use super::validate::{LocatedApp, validate};
use super::yaml::TreeLoader;

/// Loads and checks config files, reading `${VAR}`s from the process
/// environment. Apps keep the order of the files and of `apps:` in them.
///
/// # Errors
/// Every problem in every file: unreadable files, YAML syntax, includes,
/// missing variables, types, unknown keys and the semantic checks.
pub fn load_files<P: AsRef<Path>>(paths: &[P]) -> Result<LoadedConfig, ConfigErrors> {
    load_files_with_env(paths, &process_env)
}

/// [`load_files`] with `${VAR}`s looked up through `env`, so tests (and
/// tools) can supply variables without touching the process environment.
///
/// # Errors
/// As [`load_files`].
pub fn load_files_with_env<P: AsRef<Path>>(
    paths: &[P],
    env: EnvLookup<'_>,
) -> Result<LoadedConfig, ConfigErrors> {
    let mut loader = Loader::new(env);
    for path in paths {
        let path = path.as_ref();
        let root = loader.trees.load_file(path);
        loader.take_tree_errors();
        if let Some(root) = root {
            loader.add_file(&root, path, Anchor::FileDirectory);
        }
    }
    loader.finish()
}

/// Loads one config given as text (e.g. a config compiled into the binary).
/// `name` stands for the file in messages; `!include`s resolve relative to
/// its directory, but relative database and secret paths stay relative to
/// the current directory (there is no file to put them next to).
///
/// # Errors
/// As [`load_files`].
pub fn load_str(name: &str, text: &str) -> Result<LoadedConfig, ConfigErrors> {
    load_str_with_env(name, text, &process_env)
}

/// [`load_str`] with an explicit variable lookup.
///
/// # Errors
/// As [`load_files`].
pub fn load_str_with_env(
    name: &str,
    text: &str,
    env: EnvLookup<'_>,
) -> Result<LoadedConfig, ConfigErrors> {
    let mut loader = Loader::new(env);
    let path = Path::new(name);
    let root = loader.trees.load_str(text, path);
    loader.take_tree_errors();
    if let Some(root) = root {
        loader.add_file(&root, path, Anchor::CurrentDirectory);
    }
    loader.finish()
}

/// A variable that is unset or not valid UTF-8 counts as unset.
fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// What relative database and secret paths of a file's apps are relative
/// to (see `paths.rs`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Anchor {
    /// The directory of the config file that declares the app.
    FileDirectory,
    /// Wherever the process runs: a config that is not a file.
    CurrentDirectory,
}

/// State of one `load_*` call.
struct Loader<'e> {
    trees: TreeLoader<'e>,
    errors: Vec<ConfigError>,
    log: Option<super::model::LogConfig>,
    apps: Vec<LocatedApp>,
}

impl<'e> Loader<'e> {
    fn new(env: EnvLookup<'e>) -> Self {
        Self {
            trees: TreeLoader::new(env),
            errors: Vec::new(),
            log: None,
            apps: Vec::new(),
        }
    }

    fn take_tree_errors(&mut self) {
        self.errors.append(&mut self.trees.errors);
    }

    /// Types one file's tree: top-level keys, `log`, then every app.
    fn add_file(&mut self, root: &Node, file: &Path, anchor: Anchor) {
        match &root.value {
            NodeValue::Map(_) => {}
            _ if root.is_null() => return,
            _ => {
                self.errors.push(ConfigError::at(
                    &root.pos,
                    "",
                    "a config file must be a mapping with an `apps:` list",
                ));
                return;
            }
        }
        // The top level is typed without its apps: each app is typed on its
        // own below so that one broken app does not hide the others.
        let (top, errors) = from_node::<FileConfig>(&without_apps(root), "");
        self.errors.extend(errors);
        if let Some(top) = top
            && self.log.is_none()
        {
            self.log = top.log;
        }
        let Some(apps) = root.get("apps") else { return };
        match &apps.value.value {
            NodeValue::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.add_app(item, i, file, anchor);
                }
            }
            _ if apps.value.is_null() => {}
            _ => self.errors.push(ConfigError::at(
                &apps.value.pos,
                "apps",
                "expected a list of apps (`- name: ...` items)",
            )),
        }
    }

    /// Types `apps[index]`: the app entry, then its `app_config` as the
    /// struct its `app_module` asks for, deserialized from the tree (not
    /// from the untyped `RawApp::app_config`) so errors keep their positions.
    fn add_app(&mut self, node: &Node, index: usize, file: &Path, anchor: Anchor) {
        let path = format!("apps[{index}]");
        let (raw, errors) = from_node::<RawApp>(node, &path);
        self.errors.extend(errors);
        let Some(raw) = raw else { return };
        let Some(config) = node.get("app_config") else {
            self.errors.push(ConfigError::at(
                &node.pos,
                path,
                "missing required key \"app_config\"",
            ));
            return;
        };
        let config_path = format!("{path}.app_config");
        let (kind, errors) = match raw.app_module {
            AppModule::Agent => {
                let (mut c, errors) = from_node::<AgentConfig>(&config.value, &config_path);
                if let (Some(agent), Anchor::FileDirectory) = (c.as_mut(), anchor)
                    && let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty())
                {
                    paths::anchor_agent_paths(agent, dir);
                }
                (c.map(|c| AppKind::Agent(Box::new(c))), errors)
            }
            AppModule::Gateway => {
                let (c, errors) = from_node::<GatewayConfig>(&config.value, &config_path);
                (c.map(|c| AppKind::Gateway(Box::new(c))), errors)
            }
        };
        self.errors.extend(errors);
        let Some(kind) = kind else { return };
        let spec = AppSpec {
            name: raw.name,
            broker: raw.broker,
            kind,
            source: file.to_path_buf(),
        };
        if node.has_reported() {
            // A missing variable or include was typed as a placeholder so
            // typing could go on; checking placeholders would only add noise.
            return;
        }
        // Checked even when typing reported unknown keys, so one run shows
        // those and the semantic problems together.
        self.apps.push(LocatedApp {
            spec,
            node: node.clone(),
            path,
        });
    }

    fn finish(mut self) -> Result<LoadedConfig, ConfigErrors> {
        self.errors.extend(validate(&self.apps));
        // One error per key: an empty value from an unset variable is
        // reported while typing and would be again by the semantic checks.
        let mut seen = std::collections::HashSet::new();
        self.errors
            .retain(|e| seen.insert((e.file.clone(), e.line, e.key_path.clone())));
        if !self.errors.is_empty() {
            return Err(ConfigErrors(self.errors));
        }
        Ok(LoadedConfig {
            log: self.log.unwrap_or_default(),
            apps: self.apps.into_iter().map(|a| a.spec).collect(),
        })
    }
}

/// The top-level mapping with an empty `apps` list (apps are typed one by one).
fn without_apps(root: &Node) -> Node {
    let value = match &root.value {
        NodeValue::Map(entries) => NodeValue::Map(
            entries
                .iter()
                .map(|entry| {
                    if entry.key.text != "apps" {
                        return entry.clone();
                    }
                    Entry {
                        key: entry.key.clone(),
                        value: Node {
                            pos: entry.value.pos.clone(),
                            value: NodeValue::Seq(Vec::new()),
                            reported: entry.value.reported,
                            unset_vars: Vec::new(),
                        },
                    }
                })
                .collect(),
        ),
        other => other.clone(),
    };
    Node {
        pos: root.pos.clone(),
        value,
        reported: root.reported,
        unset_vars: Vec::new(),
    }
}
