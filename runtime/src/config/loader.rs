//! Loads YAML config files into a typed [`LoadedConfig`].
//!
//! Order of work: parse each file into a positioned tree (includes, anchors,
//! merges, `${VAR}`), type the top level and then each app on its own (so
//! one broken app does not hide the errors of the next), and finally run
//! the semantic checks of `validate.rs` across every app of every file.
//! Nothing stops at the first error: the caller gets all of them.

use std::path::Path;

use super::de::from_node_warn;
use super::dictconfig;
use super::error::{ConfigError, ConfigErrors};
use super::model::{
    AgentConfig, AppKind, AppSpec, FileConfig, GatewayConfig, LoadOptions, LoadedConfig, RawApp,
};
use super::node::{Entry, Node, NodeValue};
use super::paths;
use super::sam::{self, ModuleKind};
use super::scalar::EnvLookup;
use super::start_checks;
use super::tools::type_tools;
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
    load_files_with(paths, env, LoadOptions::default())
}

/// [`load_files_with_env`] with options (`amesh run --skip-unsupported`).
///
/// # Errors
/// As [`load_files`].
pub fn load_files_with<P: AsRef<Path>>(
    paths: &[P],
    env: EnvLookup<'_>,
    options: LoadOptions,
) -> Result<LoadedConfig, ConfigErrors> {
    let mut loader = Loader::new(env);
    loader.options = options;
    for path in paths {
        let path = path.as_ref();
        let root = loader.trees.load_file(path);
        loader.take_tree_errors();
        if let Some(root) = root {
            loader.add_file(&root, path, Anchor::FileDirectory);
        }
    }
    loader.add_logging_config_path();
    loader.finish()
}

/// SAM's way to name a Python logging config: the environment variable
/// `LOGGING_CONFIG_PATH` (`sam init` writes it into `.env`).
const LOGGING_CONFIG_PATH: &str = "LOGGING_CONFIG_PATH";

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
    env: EnvLookup<'e>,
    trees: TreeLoader<'e>,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigError>,
    /// Apps of modules amesh does not implement: errors, or warnings with
    /// `skip_unsupported`.
    unsupported: Vec<ConfigError>,
    options: LoadOptions,
    log: Option<super::model::LogConfig>,
    /// From a Python logging config file; wins over `log:` blocks, as
    /// SAM's `LOGGING_CONFIG_PATH` does.
    dict_log: Option<super::model::LogConfig>,
    apps: Vec<LocatedApp>,
}

impl<'e> Loader<'e> {
    fn new(env: EnvLookup<'e>) -> Self {
        Self {
            env,
            trees: TreeLoader::new(env),
            errors: Vec::new(),
            warnings: Vec::new(),
            unsupported: Vec::new(),
            options: LoadOptions::default(),
            log: None,
            dict_log: None,
            apps: Vec::new(),
        }
    }

    /// Reads the file `LOGGING_CONFIG_PATH` names when no Python logging
    /// config was among the files. A file that is not one is an error.
    fn add_logging_config_path(&mut self) {
        if self.dict_log.is_some() {
            return;
        }
        let Some(path) = (self.env)(LOGGING_CONFIG_PATH).filter(|p| !p.trim().is_empty()) else {
            return;
        };
        let path = Path::new(path.trim());
        let root = self.trees.load_file(path);
        self.take_tree_errors();
        let Some(root) = root else { return };
        if dictconfig::is_dict_config(&root) {
            self.dict_log = dictconfig::log_config(&root, &mut self.errors, &mut self.warnings);
        } else {
            self.errors.push(ConfigError::at(
                &root.pos,
                "",
                format!(
                    "{LOGGING_CONFIG_PATH} names this file, but it is not a Python logging config (a mapping with `version:` and dictConfig keys)"
                ),
            ));
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
        if dictconfig::is_dict_config(root) {
            let log = dictconfig::log_config(root, &mut self.errors, &mut self.warnings);
            self.dict_log = self.dict_log.take().or(log);
            return;
        }
        // The top level is typed without its apps: each app is typed on its
        // own below so that one broken app does not hide the others.
        let (top, errors) =
            from_node_warn::<FileConfig>(&without_apps(root), "", &mut self.warnings);
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
        let (raw, errors) = from_node_warn::<RawApp>(node, &path, &mut self.warnings);
        self.errors.extend(errors);
        let Some(raw) = raw else { return };
        let module = sam::module_kind(&raw.app_module);
        if let ModuleKind::Unsupported(_) | ModuleKind::Unknown = module {
            self.module_problem(node, &path, &raw, &module);
            return;
        }
        let Some(config) = node.get("app_config") else {
            self.errors.push(ConfigError::at(
                &node.pos,
                path,
                "missing required key \"app_config\"",
            ));
            return;
        };
        let config_path = format!("{path}.app_config");
        let warnings = &mut self.warnings;
        let (kind, errors) = if module == ModuleKind::Agent {
            let (mut c, errors) =
                from_node_warn::<AgentConfig>(&config.value, &config_path, warnings);
            if let Some(model) = config.value.get("model") {
                let path = format!("{config_path}.model");
                sam::warn_ignored_keys(&model.value, &path, "ModelFields", warnings);
            }
            let tools = config.value.get("tools").map(|tools| {
                let path = format!("{config_path}.tools");
                type_tools(&tools.value, &path, &mut self.errors, warnings)
            });
            if let Some(agent) = c.as_mut() {
                (agent.tool_indices, agent.tools) = tools.unwrap_or_default().into_iter().unzip();
                if agent.oauth_tool_redirect_uri.is_none() {
                    agent.oauth_tool_redirect_uri = (self.env)(start_checks::REDIRECT_URI_VAR);
                }
                agent.namespace = sam_namespace(&agent.namespace);
                let dir = file.parent().filter(|d| !d.as_os_str().is_empty());
                match (anchor, dir) {
                    (Anchor::FileDirectory, Some(dir)) => paths::anchor_agent_paths(agent, dir),
                    _ => paths::anchor_agent_paths(agent, Path::new("")),
                }
            }
            (c.map(|c| AppKind::Agent(Box::new(c))), errors)
        } else {
            let (mut c, errors) =
                from_node_warn::<GatewayConfig>(&config.value, &config_path, warnings);
            if let Some(gateway) = c.as_mut() {
                gateway.namespace = sam_namespace(&gateway.namespace);
            }
            (c.map(|c| AppKind::Gateway(Box::new(c))), errors)
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

    /// One error (or, with `skip_unsupported`, warning) for an app whose
    /// module amesh does not run.
    fn module_problem(&mut self, node: &Node, path: &str, raw: &RawApp, module: &ModuleKind) {
        let pos = node
            .get("app_module")
            .map_or_else(|| node.pos.clone(), |e| e.value.pos.clone());
        let key = format!("{path}.app_module");
        let name = &raw.name;
        let m = raw.app_module.trim();
        match module {
            ModuleKind::Unsupported(what) => {
                let message = if self.options.skip_unsupported {
                    format!("app {name:?} ({m}, {what}) is not supported by amesh; skipped")
                } else {
                    format!(
                        "app {name:?} runs {m} ({what}), which amesh does not implement; remove the app, or run `amesh run --skip-unsupported` to start the others"
                    )
                };
                self.unsupported.push(ConfigError::at(&pos, key, message));
            }
            _ => {
                let mut message = format!(
                    "unknown app_module {m:?}; amesh runs \"agent\" (SAM's solace_agent_mesh.agent.sac.app) and \"gateway\" (solace_agent_mesh.gateway.http_sse.app)"
                );
                if let Some(near) = ["agent", "gateway"]
                    .into_iter()
                    .find(|c| super::de_error::edit_distance(m, c) <= 2)
                {
                    message.push_str(&format!("; did you mean {near:?}?"));
                }
                self.errors.push(ConfigError::at(&pos, key, message));
            }
        }
    }

    fn finish(mut self) -> Result<LoadedConfig, ConfigErrors> {
        if self.options.skip_unsupported {
            self.warnings.append(&mut self.unsupported);
        } else {
            self.errors.append(&mut self.unsupported);
        }
        self.errors.extend(validate(&self.apps));
        self.errors
            .extend(start_checks::check(&self.apps, self.env));
        self.warnings.extend(start_checks::warnings(&self.apps));
        // One error per key: an empty value from an unset variable is
        // reported while typing and would be again by the semantic checks.
        let mut seen = std::collections::HashSet::new();
        self.errors
            .retain(|e| seen.insert((e.file.clone(), e.line, e.key_path.clone())));
        // An unset variable reported at `model.model` explains the semantic
        // error about `model` too.
        let unset: Vec<String> = self
            .errors
            .iter()
            .filter(|e| e.message.contains("is not set and"))
            .map(|e| e.key_path.clone())
            .collect();
        self.errors.retain(|e| {
            !unset
                .iter()
                .any(|u| u.len() > e.key_path.len() && u.starts_with(&format!("{}.", e.key_path)))
        });
        if !self.errors.is_empty() {
            return Err(ConfigErrors(self.errors));
        }
        let mut seen = std::collections::HashSet::new();
        self.warnings
            .retain(|e| seen.insert((e.file.clone(), e.line, e.key_path.clone())));
        Ok(LoadedConfig {
            log: self.dict_log.or(self.log).unwrap_or_default(),
            apps: self.apps.into_iter().map(|a| a.spec).collect(),
            warnings: self.warnings,
        })
    }
}

/// SAM strips a trailing `/` from namespaces (`myorg/dev/` is `myorg/dev`).
fn sam_namespace(namespace: &str) -> String {
    namespace.trim_end_matches('/').to_owned()
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
