//! Tool input schemas: checked at load, compiled once, applied to every call.
//!
//! The model writes tool arguments; a remote server may act on them with a
//! user's credentials. So arguments are validated here, against the tool's
//! `inputSchema`, before anything is sent, and the model gets every
//! violation with its JSON pointer so it can fix its call in one turn.
//!
//! Schemas come in whatever draft the server or manifest used; the `$schema`
//! keyword picks the draft when compiling (2020-12 when absent).
//! [`for_model`] rewrites that keyword where a model provider insists on one
//! dialect.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

use crate::client::ExposedTool;
use crate::tool_config::SchemaDialect;

/// `$schema` URI of JSON Schema draft-07.
pub const DRAFT_07: &str = "http://json-schema.org/draft-07/schema#";
/// `$schema` URI of JSON Schema 2020-12.
pub const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Checks that `schema` can serve as an MCP tool `inputSchema`: a JSON
/// object with `"type": "object"`, valid against its draft's meta-schema,
/// and compilable (every `$ref` resolvable without network access).
/// Returns every problem found, each prefixed with its schema pointer.
pub fn check_input_schema(schema: &Value) -> Result<(), Vec<String>> {
    let Some(object) = schema.as_object() else {
        return Err(vec![format!(
            "expected a JSON object, found {}",
            json_type(schema)
        )]);
    };
    let mut problems = Vec::new();
    match object.get("type") {
        Some(Value::String(t)) if t == "object" => {}
        Some(other) => problems.push(format!(
            "/type: expected \"object\" (tools take an object of named arguments), found {other}"
        )),
        None => problems.push("/type: missing; expected \"object\"".into()),
    }
    // `meta::validator_for` fails (instead of panicking like `meta::validate`)
    // on a `$schema` it does not know.
    match jsonschema::meta::validator_for(schema) {
        Ok(meta) => problems.extend(
            meta.iter_errors(schema)
                .map(|e| format!("{}: {e}", pointer_or_root(e.instance_path().as_str()))),
        ),
        // An unknown URI (often a documentation link such as
        // `https://json-schema.org/specification-links#2020-12`) would
        // otherwise be reported as a failed remote lookup.
        Err(e) => problems.push(match object.get("$schema") {
            Some(Value::String(uri)) => format!(
                "$schema: {uri:?} is not a JSON Schema dialect URI amesh knows; write \
                 {DRAFT_07:?} (as MCP servers do) or {DRAFT_2020_12:?}, and set the tool's \
                 schema_dialect if the model provider needs the other one"
            ),
            _ => format!("$schema: {e}"),
        }),
    }
    if problems.is_empty()
        && let Err(e) = jsonschema::validator_for(schema)
    {
        problems.push(format!("cannot compile: {e}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// A tool's compiled input schema, built once when the tool is registered
/// and shared by every call.
pub struct ToolSchema {
    /// Name the model uses (with any prefix).
    exposed_name: String,
    /// Name the server knows.
    remote_name: String,
    validator: jsonschema::Validator,
}

impl fmt::Debug for ToolSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ToolSchema")
            .field("exposed_name", &self.exposed_name)
            .field("remote_name", &self.remote_name)
            .finish_non_exhaustive()
    }
}

/// A schema that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("input schema of tool `{tool}` does not compile: {message}")]
pub struct SchemaError {
    pub tool: String,
    pub message: String,
}

impl ToolSchema {
    /// Compiles `schema` for the tool the model calls `exposed_name` and the
    /// server calls `remote_name`.
    pub fn compile(
        exposed_name: impl Into<String>,
        remote_name: impl Into<String>,
        schema: &Value,
    ) -> Result<Self, SchemaError> {
        let exposed_name = exposed_name.into();
        let validator = jsonschema::validator_for(schema).map_err(|e| SchemaError {
            tool: exposed_name.clone(),
            message: e.to_string(),
        })?;
        Ok(Self {
            exposed_name,
            remote_name: remote_name.into(),
            validator,
        })
    }

    pub fn exposed_name(&self) -> &str {
        &self.exposed_name
    }

    pub fn remote_name(&self) -> &str {
        &self.remote_name
    }

    /// Same as [`validate_arguments`].
    pub fn validate(&self, arguments: &Value) -> Result<(), ArgumentError> {
        validate_arguments(self, arguments)
    }
}

/// One way the arguments break the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// JSON pointer into the arguments (`""` is the whole object).
    pub pointer: String,
    /// JSON pointer to the schema keyword that failed.
    pub schema_pointer: String,
    pub message: String,
}

/// Arguments refused before sending; lists every violation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ArgumentError {
    pub tool: String,
    pub violations: Vec<Violation>,
}

impl fmt::Display for ArgumentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid arguments for tool `{}`:", self.tool)?;
        for v in &self.violations {
            write!(f, " {}: {};", pointer_or_root(&v.pointer), v.message)?;
        }
        Ok(())
    }
}

/// Validates `arguments` against `tool`'s input schema, listing every violation.
pub fn validate_arguments(tool: &ToolSchema, arguments: &Value) -> Result<(), ArgumentError> {
    let violations: Vec<Violation> = tool
        .validator
        .iter_errors(arguments)
        .map(|e| Violation {
            pointer: e.instance_path().as_str().to_owned(),
            schema_pointer: e.schema_path().as_str().to_owned(),
            message: e.to_string(),
        })
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(ArgumentError {
            tool: tool.exposed_name.clone(),
            violations,
        })
    }
}

/// The compiled schemas of one agent's MCP tools, by exposed name.
#[derive(Debug, Default)]
pub struct ToolSchemas {
    by_name: HashMap<String, ToolSchema>,
}

impl ToolSchemas {
    /// Compiles every tool's schema; fails on the first that does not compile.
    pub fn compile<'a>(
        tools: impl IntoIterator<Item = &'a ExposedTool>,
    ) -> Result<Self, SchemaError> {
        let mut by_name = HashMap::new();
        for tool in tools {
            let compiled =
                ToolSchema::compile(&tool.exposed_name, &tool.tool.name, &tool.tool.input_schema)?;
            by_name.insert(tool.exposed_name.clone(), compiled);
        }
        Ok(Self { by_name })
    }

    pub fn get(&self, exposed_name: &str) -> Option<&ToolSchema> {
        self.by_name.get(exposed_name)
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// The schema as handed to a model: `$schema` set to `dialect`'s URI, or
/// left alone when no dialect is configured. Only the top-level keyword is
/// rewritten; the rest of the schema is passed through untouched.
pub fn for_model(schema: &Value, dialect: Option<SchemaDialect>) -> Value {
    let mut out = schema.clone();
    if let (Some(dialect), Value::Object(map)) = (dialect, &mut out) {
        let uri = match dialect {
            SchemaDialect::Draft07 => DRAFT_07,
            SchemaDialect::Draft202012 => DRAFT_2020_12,
        };
        map.insert("$schema".into(), Value::String(uri.into()));
    }
    out
}

fn pointer_or_root(pointer: &str) -> &str {
    if pointer.is_empty() { "/" } else { pointer }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn draft07_schema_with_additional_properties_false_is_accepted() {
        let schema = json!({"type": "object", "properties": {}, "additionalProperties": false,
                            "$schema": "http://json-schema.org/draft-07/schema#"});
        check_input_schema(&schema).unwrap();
    }

    #[test]
    fn unknown_dialect_is_reported_not_panicked() {
        let schema = json!({"type": "object", "$schema": "https://example.invalid/my-schema"});
        let problems = check_input_schema(&schema).unwrap_err();
        assert!(
            problems[0].contains("is not a JSON Schema dialect URI amesh knows"),
            "{problems:?}"
        );
    }

    #[test]
    fn for_model_rewrites_only_dollar_schema() {
        let schema = json!({"type": "object", "$schema": DRAFT_07, "properties": {"a": {}}});
        let out = for_model(&schema, Some(SchemaDialect::Draft202012));
        assert_eq!(out["$schema"], DRAFT_2020_12);
        assert_eq!(out["properties"], schema["properties"]);
        assert_eq!(for_model(&schema, None), schema);
    }
}
