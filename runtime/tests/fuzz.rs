//! Fuzz targets for the runtime's parsers of outside input: the YAML
//! config loader (as SAM configs are written) and A2A JSON-RPC requests
//! off the broker. Stable-toolchain property tests (proptest), so they run
//! in `cargo test`; `PROPTEST_CASES=20000 cargo test -p amesh-runtime --test
//! fuzz` runs longer. Properties, beyond "never panics":
//! - a config that does not load yields errors that each point into the
//!   text (`file:line:column`, the line and column inside it), and warnings
//!   do too;
//! - any payload parses to a JSON-RPC 2.0 request, or to the error to send
//!   back: -32700 with `id: null` for bytes that are not JSON, -32600 for
//!   JSON that is not a request (keeping a usable id), never anything else;
//!   a request parsed once parses again, unchanged, from its serialization.

use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use amesh_runtime::a2a::MessageSendParams;
use amesh_runtime::a2a::jsonrpc::{INVALID_REQUEST, PARSE_ERROR, Response, parse_request};
use amesh_runtime::config::{ConfigError, load_str_with_env};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_json::{Value, json};

/// Case count: `PROPTEST_CASES` when set (longer local runs), else the
/// CI budget given.
fn config(ci_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(ci_cases);
    Config {
        cases,
        // `<crate>/proptest-regressions/fuzz.txt`, committed: every failure
        // found is replayed first on every later run.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proptest-regressions/fuzz.txt"
        )))),
        ..Config::default()
    }
}

// -------------------------------------------------------------- config

/// The name the fuzzed text is loaded under.
const NAME: &str = "fuzz.yaml";

/// Seeds: the config fixtures of the test suite and the shipped examples,
/// except those that `!include` other files (an include resolves against a
/// real directory, and its errors name the included file).
static SEEDS: LazyLock<Vec<String>> = LazyLock::new(|| {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut seeds = Vec::new();
    for dir in ["tests/fixtures/config", "configs/examples", "configs"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            if path.extension().is_some_and(|e| e == "yaml")
                && let Ok(text) = std::fs::read_to_string(&path)
                && !text.contains("include")
            {
                seeds.push(text);
            }
        }
    }
    assert!(seeds.len() >= 10, "config seeds found: {}", seeds.len());
    seeds
});

/// Variables the fuzzed configs may name; everything else is unset.
fn env(name: &str) -> Option<String> {
    match name {
        "NAMESPACE" => Some("a2a/fuzz".into()),
        "BROKER_URL" => Some("tcp://127.0.0.1:1883".into()),
        "EMPTY" => Some(String::new()),
        _ => None,
    }
}

/// Fragments that make YAML (and SAM configs) interesting: anchors,
/// aliases, merges, flow collections, tags, block scalars, variables.
const YAML_PIECES: &[&str] = &[
    "apps:",
    "- name: a",
    "  app_config:",
    "    namespace: ${NAMESPACE}",
    "    agent_name: x",
    "    model: *general_model",
    "<<: *shared",
    "&anchor ",
    "*anchor",
    "{a: 1, b: [1, 2]}",
    "[",
    "}",
    "!!str 5",
    "!include x.yaml",
    "key: |\n  text\n",
    "key: >-\n",
    "${UNSET}",
    "${UNSET, default}",
    "${EMPTY}",
    "'quoted ''x'''",
    "\"esc \\u00e9 \\x\"",
    "# comment",
    "---",
    "...",
    ": ",
    "- ",
    "\t",
    "  ",
    "\n",
    "é",
    "~",
    "null",
    "0x1F",
    "1e400",
    "-9223372036854775809",
];

/// An edit of a config at line level (positions modulo its length).
#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    InsertLine(usize, String),
    Indent(usize, usize),
    Dedent(usize),
    Splice(usize, String),
    /// Replace one character with one YAML gives meaning to.
    SetChar(usize, char),
    Truncate(usize),
}

fn yaml_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(YAML_PIECES).prop_map(str::to_owned),
        1 => "[ -~]{0,12}",
    ]
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        any::<usize>().prop_map(Edit::DeleteLine),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        (any::<usize>(), yaml_piece()).prop_map(|(a, p)| Edit::InsertLine(a, p)),
        (any::<usize>(), 1usize..5).prop_map(|(a, n)| Edit::Indent(a, n)),
        any::<usize>().prop_map(Edit::Dedent),
        (any::<usize>(), yaml_piece()).prop_map(|(a, p)| Edit::Splice(a, p)),
        (
            any::<usize>(),
            prop::sample::select(
                ":-[]{}\"'&*!|>#%@`,?\t é\u{feff}\r"
                    .chars()
                    .collect::<Vec<_>>()
            )
        )
            .prop_map(|(a, c)| Edit::SetChar(a, c)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn apply(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    for e in edits {
        let n = lines.len().max(1);
        match e {
            Edit::DeleteLine(a) if !lines.is_empty() => {
                lines.remove(a % n);
            }
            Edit::DuplicateLine(a) if !lines.is_empty() => {
                let line = lines[a % n].clone();
                lines.insert(a % n, line);
            }
            Edit::SwapLines(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
            Edit::InsertLine(a, piece) => lines.insert(a % (lines.len() + 1), piece.clone()),
            Edit::Indent(a, by) if !lines.is_empty() => {
                lines[a % n].insert_str(0, &" ".repeat(*by));
            }
            Edit::Dedent(a) if !lines.is_empty() => {
                let line = &mut lines[a % n];
                *line = line.trim_start().to_owned();
            }
            Edit::Splice(a, piece) => {
                // Into the middle of the text, at a character boundary.
                let mut joined = lines.join("\n");
                let mut at = a % (joined.len() + 1);
                while !joined.is_char_boundary(at) {
                    at -= 1;
                }
                joined.insert_str(at, piece);
                lines = joined.lines().map(str::to_owned).collect();
            }
            Edit::SetChar(a, c) => {
                let joined = lines.join("\n");
                let count = joined.chars().count().max(1);
                let at = a % count;
                let replaced: String = joined
                    .chars()
                    .enumerate()
                    .map(|(i, old)| if i == at { *c } else { old })
                    .collect();
                lines = replaced.lines().map(str::to_owned).collect();
            }
            Edit::Truncate(a) if !lines.is_empty() => lines.truncate(a % n),
            _ => {}
        }
    }
    lines.join("\n")
}

fn fuzzed_config() -> impl Strategy<Value = String> {
    let count = SEEDS.len();
    prop_oneof![
        4 => (0..count, prop::collection::vec(edit(), 0..6))
            .prop_map(|(seed, edits)| apply(&SEEDS[seed], &edits)),
        1 => prop::collection::vec(yaml_piece(), 0..30).prop_map(|p| p.join("")),
    ]
    // Includes read other files (and name them in errors): not this target.
    .prop_filter("no includes", |text| !text.contains("include"))
}

/// The error points into `text`: this file, a line of it, a column of
/// that line (end of line included). Lines are YAML's: a lone CR ends one
/// too, as it does in editors that show such a file.
fn points_into(e: &ConfigError, text: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(e.file.as_path(), Path::new(NAME), "{}", e);
    // Lines as YAML counts them: CR, LF and CRLF all end one.
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let lines: Vec<&str> = text.split('\n').collect();
    prop_assert!(
        e.line >= 1 && e.line <= lines.len(),
        "line {} of {}: {}",
        e.line,
        lines.len(),
        e
    );
    let width = lines[e.line - 1].chars().count();
    prop_assert!(
        e.column >= 1 && e.column <= width + 1,
        "column {} of a {}-character line: {}",
        e.column,
        width,
        e
    );
    prop_assert!(
        e.to_string()
            .starts_with(&format!("{NAME}:{}:{}: ", e.line, e.column)),
        "{}",
        e
    );
    Ok(())
}

proptest! {
    #![proptest_config(config(4000))]

    #[test]
    fn config_errors_name_file_line_and_column(text in fuzzed_config()) {
        match load_str_with_env(NAME, &text, &env) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    points_into(w, &text)?;
                }
            }
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in errors.iter() {
                    points_into(e, &text)?;
                }
            }
        }
    }
}

/// The seeds themselves: each either loads or fails with positioned errors.
#[test]
fn config_seeds_load_or_fail_with_positions() {
    for seed in SEEDS.iter() {
        if let Err(errors) = load_str_with_env(NAME, seed, &env) {
            for e in errors.iter() {
                points_into(e, seed).unwrap_or_else(|f| panic!("{f}\n{seed}"));
            }
        }
    }
}

// ------------------------------------------------------------ JSON-RPC

/// JSON values of the shapes a request has, and of shapes it must not.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[a-z/ ]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 20, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A field of a request: absent, or one of the values that matter for it.
fn field(values: Vec<Value>) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        1 => Just(None),
        4 => prop::sample::select(values).prop_map(Some),
        1 => json_value().prop_map(Some),
    ]
}

fn request_like() -> impl Strategy<Value = Value> {
    (
        field(vec![json!("2.0"), json!("1.0"), json!(2.0), json!("2.0 ")]),
        field(vec![json!(1), json!("a-1"), json!(null), json!(1.5), json!([1]), json!({})]),
        field(vec![json!("message/send"), json!("tasks/get"), json!(""), json!(7)]),
        field(vec![
            json!({"message": {"role": "user", "parts": [{"kind": "text", "text": "hi"}], "messageId": "m1", "kind": "message"}}),
            json!({"id": "t1"}),
            json!([]),
        ]),
        prop::option::of(json_value()),
    )
        .prop_map(|(jsonrpc, id, method, params, extra)| {
            let mut object = serde_json::Map::new();
            for (key, value) in [("jsonrpc", jsonrpc), ("id", id), ("method", method), ("params", params), ("extra", extra)] {
                if let Some(value) = value {
                    object.insert(key.to_owned(), value);
                }
            }
            Value::Object(object)
        })
}

/// The oracle: what `parse_request` must make of a JSON value.
fn expected(value: &Value) -> Result<(), (Value, i64)> {
    let id = value.get("id").cloned().unwrap_or(Value::Null);
    if !matches!(id, Value::Null | Value::String(_) | Value::Number(_)) {
        return Err((Value::Null, INVALID_REQUEST));
    }
    let is_request = value.get("jsonrpc") == Some(&json!("2.0"))
        && value.get("method").is_some_and(Value::is_string);
    if is_request {
        Ok(())
    } else {
        Err((id, INVALID_REQUEST))
    }
}

/// The error reply to a refused payload is a JSON-RPC 2.0 response.
fn reply_is_well_formed(id: Value, code: i64, message: String) -> Result<(), TestCaseError> {
    let reply = Response::err(
        id.clone(),
        amesh_runtime::a2a::jsonrpc::RpcError::new(code, message),
    );
    let back: Value = serde_json::from_slice(&reply.to_bytes()).expect("reply is JSON");
    prop_assert_eq!(&back["jsonrpc"], &json!("2.0"));
    prop_assert_eq!(&back["id"], &id);
    prop_assert_eq!(&back["error"]["code"], &json!(code));
    prop_assert!(back.get("result").is_none());
    Ok(())
}

proptest! {
    #![proptest_config(config(8000))]

    #[test]
    fn any_payload_is_a_request_or_the_right_json_rpc_error(
        payload in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..64),
            request_like().prop_map(|v| serde_json::to_vec(&v).expect("json")),
            // Truncated requests: JSON cut anywhere.
            (request_like(), any::<usize>()).prop_map(|(v, cut)| {
                let bytes = serde_json::to_vec(&v).expect("json");
                bytes[..cut % (bytes.len() + 1)].to_vec()
            }),
        ],
    ) {
        match parse_request(&payload) {
            Ok(request) => {
                prop_assert_eq!(request.jsonrpc.as_str(), "2.0");
                prop_assert!(matches!(request.id, None | Some(Value::String(_) | Value::Number(_))));
                let again = parse_request(&serde_json::to_vec(&request).expect("json"));
                prop_assert_eq!(again, Ok(request));
            }
            Err((id, error)) => {
                match serde_json::from_slice::<Value>(&payload) {
                    Err(_) => {
                        prop_assert_eq!(error.code, PARSE_ERROR);
                        prop_assert_eq!(&id, &Value::Null);
                    }
                    Ok(value) => {
                        prop_assert_eq!(error.code, INVALID_REQUEST);
                        prop_assert_eq!(expected(&value), Err((id.clone(), INVALID_REQUEST)));
                    }
                }
                reply_is_well_formed(id, error.code, error.message)?;
            }
        }
    }

    #[test]
    fn request_shaped_json_parses_as_the_oracle_says(value in request_like()) {
        let parsed = parse_request(&serde_json::to_vec(&value).expect("json"));
        match (expected(&value), parsed) {
            (Ok(()), Ok(request)) => {
                prop_assert_eq!(Some(request.method.as_str()), value.get("method").and_then(Value::as_str));
                // `message/send` params that type as A2A params round-trip too.
                if let Ok(params) = serde_json::from_value::<MessageSendParams>(request.params.clone()) {
                    let again: MessageSendParams =
                        serde_json::from_value(serde_json::to_value(&params).expect("json")).expect("parses");
                    prop_assert_eq!(
                        serde_json::to_value(&again).expect("json"),
                        serde_json::to_value(&params).expect("json")
                    );
                }
            }
            (Err((id, code)), Err((got_id, error))) => {
                prop_assert_eq!(error.code, code);
                prop_assert_eq!(got_id, id);
            }
            (want, got) => prop_assert!(false, "expected {want:?}, parsed {got:?} from {value}"),
        }
    }
}
