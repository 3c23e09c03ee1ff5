//! The node deserializer: typing, friendly messages, positions and paths.

use std::collections::BTreeMap;
use std::path::Path;

use secrecy::ExposeSecret as _;
use serde::Deserialize;

use super::super::model::{TrustManagerConfig, UserConfig, VerificationMode};
use super::super::yaml::TreeLoader;
use super::*;

fn tree(text: &str) -> Node {
    let mut loader = TreeLoader::new(&|_| None);
    let node = loader.load_str(text, Path::new("t.yaml"));
    assert!(loader.errors.is_empty(), "{:?}", loader.errors);
    node.expect("a tree")
}

fn load<T: DeserializeOwned>(text: &str) -> Result<T, Vec<String>> {
    match from_node(&tree(text), "") {
        (Some(value), errors) if errors.is_empty() => Ok(value),
        (_, errors) => Err(errors.iter().map(ToString::to_string).collect()),
    }
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Sample {
    port: u16,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    flag: bool,
    #[serde(default)]
    ratio: f64,
    #[serde(default)]
    list: Vec<String>,
}

#[test]
fn plain_scalars_are_typed_for_typed_fields() {
    let s: Sample =
        load("port: 0x1F40\nname: 1234\nflag: True\nratio: 1\nlist: [a, 2, true]\n").unwrap();
    assert_eq!(
        s,
        Sample {
            port: 8000,
            name: Some("1234".into()),
            flag: true,
            ratio: 1.0,
            list: vec!["a".into(), "2".into(), "true".into()],
        }
    );
}

#[test]
fn empty_values_are_none_and_empty_lists() {
    let s: Sample = load("port: 1\nname:\nlist:\n").unwrap();
    assert_eq!(s.name, None);
    assert!(s.list.is_empty());
}

#[test]
fn wrong_type_names_expected_and_found_at_the_value() {
    assert_eq!(
        load::<Sample>("port: abc\n").unwrap_err(),
        ["t.yaml:1:7: port: expected an integer, found \"abc\""]
    );
    assert_eq!(
        load::<Sample>("port: 70000\n").unwrap_err(),
        ["t.yaml:1:7: port: expected an integer between 0 and 65535, found 70000"]
    );
    assert_eq!(
        load::<Sample>("port: 1\nflag: yes\n").unwrap_err(),
        ["t.yaml:2:7: flag: expected a boolean (true or false), found \"yes\""]
    );
    assert_eq!(
        load::<Sample>("port: 1\nlist: {a: 1}\n").unwrap_err(),
        ["t.yaml:2:7: list: expected a list, found a mapping"]
    );
    assert_eq!(
        load::<Sample>("port: 1\nlist: [a, [b]]\n").unwrap_err(),
        ["t.yaml:2:11: list[1]: expected a string, found a list"]
    );
}

#[test]
fn quoted_numbers_stay_strings_with_a_hint() {
    assert_eq!(
        load::<Sample>("port: '8000'\n").unwrap_err(),
        [
            "t.yaml:1:7: port: expected an integer, found \"8000\" (a quoted value is a string; write it without quotes)"
        ]
    );
}

#[test]
fn all_unknown_keys_are_reported_with_their_positions() {
    let errs = load::<Sample>("port: 1\nnmae: x\nflga: true\n").unwrap_err();
    assert_eq!(
        errs,
        [
            "t.yaml:2:1: nmae: unknown key \"nmae\"; expected one of: port, name, flag, ratio, list; did you mean \"name\"?",
            "t.yaml:3:1: flga: unknown key \"flga\"; expected one of: port, name, flag, ratio, list; did you mean \"flag\"?",
        ]
    );
}

#[test]
fn missing_required_key_points_at_the_mapping() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        inner: Sample,
    }
    assert_eq!(
        load::<Outer>("inner:\n  name: x\n").unwrap_err(),
        ["t.yaml:2:3: inner: missing required key \"port\""]
    );
}

#[test]
fn unknown_enum_value_lists_the_choices() {
    let errs = load::<TrustManagerConfig>("verification_mode: stict\n").unwrap_err();
    assert_eq!(
        errs,
        ["t.yaml:1:20: verification_mode: expected \"strict\" or \"permissive\", found \"stict\""]
    );
    let tm: TrustManagerConfig = load("verification_mode: strict\n").unwrap();
    assert_eq!(tm.verification_mode, VerificationMode::Strict);
}

#[test]
fn alias_choices_are_listed_once_in_lower_case() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Log {
        level: super::super::model::LogLevel,
    }
    let errs = load::<Log>("level: loud\n").unwrap_err();
    assert_eq!(
        errs,
        [
            "t.yaml:1:8: level: expected one of \"trace\", \"debug\", \"info\", \"warn\", \"warning\", \"critical\", \"error\", found \"loud\""
        ]
    );
}

#[test]
fn json_values_are_typed_by_the_core_schema() {
    let v: serde_json::Value =
        load("a: 1\nb: '1'\nc: true\nd: ~\ne: 1.5\nf: [x, -2]\ng: |\n  text\n").unwrap();
    assert_eq!(
        v,
        serde_json::json!({"a": 1, "b": "1", "c": true, "d": null, "e": 1.5, "f": ["x", -2], "g": "text\n"})
    );
}

#[test]
fn internally_tagged_enum_errors_point_at_the_unknown_key() {
    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Tools {
        tools: Vec<super::super::model::ToolConfig>,
    }
    let errs = load::<Tools>("tools:\n  - tool_type: builtin\n    tool_nam: echo\n").unwrap_err();
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].starts_with("t.yaml:3:5: tools[0].tool_nam: unknown key \"tool_nam\""),
        "{errs:?}"
    );
}

#[test]
fn externally_tagged_enums_from_maps() {
    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Off,
        Fixed(u32),
        Range { low: u32, high: u32 },
    }
    let m: BTreeMap<String, Mode> =
        load("a: off\nb: {fixed: 3}\nc:\n  range: {low: 1, high: 2}\n").unwrap();
    assert_eq!(m["a"], Mode::Off);
    assert_eq!(m["b"], Mode::Fixed(3));
    assert_eq!(m["c"], Mode::Range { low: 1, high: 2 });
}

#[test]
fn user_debug_redacts_but_token_is_loaded() {
    let u: UserConfig = load("id: alice\ntoken: 1234\n").unwrap();
    assert_eq!(u.token.as_deref(), Some("1234"));
    assert!(!format!("{u:?}").contains("1234"));
}

#[test]
fn session_secret_key_and_database_passwords_stay_out_of_debug() {
    let gw: super::super::model::GatewayConfig =
        load("namespace: n\nsession_secret_key: s3cr3t-session-key\n").unwrap();
    assert_eq!(
        gw.session_secret_key.as_ref().map(|k| k.expose_secret()),
        Some("s3cr3t-session-key")
    );
    assert!(!format!("{gw:?}").contains("s3cr3t"), "{gw:?}");
    let ss: super::super::model::SessionServiceConfig =
        load("type: sql\ndatabase_url: postgresql://amesh:hunter2@db:5432/amesh\n").unwrap();
    let shown = format!("{ss:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("db:5432"), "{shown}");
}
