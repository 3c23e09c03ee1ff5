//! SAM's `logging_config.yaml`: a Python `logging.config.dictConfig` file.
//!
//! `sam init` writes one into `configs/`, and `sam run` (with no file
//! arguments) runs every YAML file there, so operators pass it along with
//! their app configs. amesh has one log level for stdout and one for an
//! optional file, so the file maps as far as that goes: the level of the
//! `solace_agent_mesh` logger (else `solace_ai_connector`, else `root`)
//! is amesh's level; a handler with a `filename` that the root or those
//! loggers use becomes `log_file`. Formatters, filters and other loggers
//! have no amesh counterpart; one warning says so.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::de::from_node;
use super::error::ConfigError;
use super::model::{LogConfig, LogFormat, LogLevel};
use super::node::Node;

/// Top-level keys of a dictConfig file.
const KEYS: &[&str] = &[
    "version",
    "disable_existing_loggers",
    "incremental",
    "formatters",
    "filters",
    "handlers",
    "loggers",
    "root",
];

/// Loggers whose level is amesh's level, most specific first.
const AMESH_LOGGERS: &[&str] = &["solace_agent_mesh", "solace_ai_connector"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DictConfig {
    #[serde(rename = "version")]
    _version: serde_json::Value,
    #[serde(default, rename = "disable_existing_loggers")]
    _disable_existing_loggers: Option<serde_json::Value>,
    #[serde(default, rename = "incremental")]
    _incremental: Option<serde_json::Value>,
    #[serde(default)]
    formatters: Option<serde_json::Value>,
    #[serde(default)]
    filters: Option<serde_json::Value>,
    #[serde(default)]
    handlers: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    loggers: BTreeMap<String, Logger>,
    #[serde(default)]
    root: Option<Logger>,
}

#[derive(Deserialize, Default)]
struct Logger {
    #[serde(default)]
    level: Option<serde_json::Value>,
    #[serde(default)]
    handlers: Vec<String>,
}

/// Whether `root` looks like a dictConfig file: `version` and only
/// dictConfig keys at the top.
pub fn is_dict_config(root: &Node) -> bool {
    let Some(entries) = root.entries() else {
        return false;
    };
    root.get("version").is_some() && entries.iter().all(|e| KEYS.contains(&e.key.text.as_str()))
}

/// The log settings a dictConfig file maps to, with a warning about what
/// does not map.
pub fn log_config(
    root: &Node,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<ConfigError>,
) -> Option<LogConfig> {
    let (dict, errs) = from_node::<DictConfig>(root, "");
    errors.extend(errs);
    let dict = dict?;
    let logger = AMESH_LOGGERS
        .iter()
        .find_map(|name| dict.loggers.get(*name))
        .or(dict.root.as_ref());
    let level = logger
        .and_then(|l| l.level.as_ref())
        .and_then(python_level)
        .unwrap_or(LogLevel::Info);
    let mut used: Vec<&String> = dict.root.iter().flat_map(|r| &r.handlers).collect();
    for name in AMESH_LOGGERS {
        used.extend(dict.loggers.get(*name).iter().flat_map(|l| &l.handlers));
    }
    let mut cfg = LogConfig {
        stdout_log_level: level,
        log_file_level: level,
        log_file: None,
        stdout_log_format: LogFormat::Text,
        log_file_format: LogFormat::Text,
    };
    for name in used {
        let Some(handler) = dict.handlers.get(name) else {
            continue;
        };
        let handler_level = handler.get("level").and_then(python_level);
        let max = |l: Option<LogLevel>| l.map_or(level, |l| l.max(level));
        let format = handler_format(handler, dict.formatters.as_ref());
        match handler.get("filename").and_then(|f| f.as_str()) {
            Some(file) if cfg.log_file.is_none() => {
                cfg.log_file = Some(file.into());
                cfg.log_file_level = max(handler_level);
                cfg.log_file_format = format;
            }
            Some(_) => {}
            None => {
                cfg.stdout_log_level = max(handler_level);
                cfg.stdout_log_format = format;
            }
        }
    }
    let unmapped = dict.formatters.is_some()
        || dict.filters.is_some()
        || dict
            .loggers
            .keys()
            .any(|k| !AMESH_LOGGERS.contains(&k.as_str()));
    if unmapped {
        warnings.push(ConfigError::at(
            &root.pos,
            "",
            format!(
                "Python logging config read as amesh levels (stdout {}, file {}); its formatters, filters and other loggers are not supported by amesh, ignored",
                cfg.stdout_log_level.as_filter(),
                cfg.log_file_level.as_filter()
            ),
        ));
    }
    Some(cfg)
}

/// `json` when the handler's formatter is a JSON formatter (SAM's
/// `pythonjsonlogger.json.JsonFormatter`, or any class or factory whose
/// name says JSON); amesh writes its own fields, not the format string.
fn handler_format(
    handler: &serde_json::Value,
    formatters: Option<&serde_json::Value>,
) -> LogFormat {
    let formatter = handler
        .get("formatter")
        .and_then(|name| name.as_str())
        .and_then(|name| formatters?.get(name));
    let is_json = formatter.is_some_and(|f| {
        ["()", "class"].iter().any(|key| {
            f.get(*key)
                .and_then(|c| c.as_str())
                .is_some_and(|c| c.to_ascii_lowercase().contains("json"))
        })
    });
    if is_json {
        LogFormat::Json
    } else {
        LogFormat::Text
    }
}

/// A Python level name or number as amesh's level (`NOTSET` is everything).
fn python_level(value: &serde_json::Value) -> Option<LogLevel> {
    if let Some(n) = value.as_u64() {
        return Some(match n {
            0..=9 => LogLevel::Trace,
            10..=19 => LogLevel::Debug,
            20..=29 => LogLevel::Info,
            30..=39 => LogLevel::Warn,
            _ => LogLevel::Error,
        });
    }
    match value.as_str()?.to_ascii_uppercase().as_str() {
        "NOTSET" => Some(LogLevel::Trace),
        "DEBUG" => Some(LogLevel::Debug),
        "INFO" => Some(LogLevel::Info),
        "WARNING" | "WARN" => Some(LogLevel::Warn),
        "ERROR" | "CRITICAL" | "FATAL" => Some(LogLevel::Error),
        _ => None,
    }
}
