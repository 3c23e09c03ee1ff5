//! Tree building: positions, anchors, merge keys, includes, substitution.

use std::collections::HashMap;
use std::path::Path;

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

/// Parses `text` as `dir/main.yaml`; returns the tree and the errors.
fn parse_in(dir: &Path, text: &str, env: EnvLookup<'_>) -> (Option<Node>, Vec<ConfigError>) {
    let mut loader = TreeLoader::new(env);
    let node = loader.load_str(text, &dir.join("main.yaml"));
    (node, loader.errors)
}

fn parse(text: &str) -> Node {
    let (node, errors) = parse_in(Path::new("/nonexistent"), text, &no_env);
    assert!(errors.is_empty(), "unexpected errors: {errors:?}");
    node.expect("a tree")
}

fn text_at<'n>(node: &'n Node, keys: &[&str]) -> &'n str {
    let mut node = node;
    for key in keys {
        node = &node
            .get(key)
            .unwrap_or_else(|| panic!("no key {key}"))
            .value;
    }
    match &node.value {
        NodeValue::Scalar(s) => &s.text,
        other => panic!("not a scalar: {other:?}"),
    }
}

fn keys(node: &Node) -> Vec<&str> {
    node.entries()
        .expect("a mapping")
        .iter()
        .map(|e| e.key.text.as_str())
        .collect()
}

#[test]
fn nodes_carry_one_based_lines_and_columns() {
    let root = parse("a:\n  b: x\n  c: [1, 'two']\n");
    let a = root.get("a").unwrap();
    assert_eq!((a.key.pos.line, a.key.pos.column), (1, 1));
    let b = a.value.get("b").unwrap();
    assert_eq!((b.key.pos.line, b.key.pos.column), (2, 3));
    assert_eq!((b.value.pos.line, b.value.pos.column), (2, 6));
    let c = &a.value.get("c").unwrap().value;
    let two = &c.items().unwrap()[1];
    assert_eq!((two.pos.line, two.pos.column), (3, 10));
    assert_eq!(
        two.value,
        NodeValue::Scalar(Scalar {
            text: "two".into(),
            plain: false
        })
    );
}

#[test]
fn aliases_copy_the_anchored_node() {
    let root = parse("base: &b {x: 1}\nuse: *b\nname: &n hello\nagain: *n\n");
    assert_eq!(text_at(&root, &["use", "x"]), "1");
    assert_eq!(text_at(&root, &["again"]), "hello");
}

#[test]
fn merge_key_explicit_keys_win() {
    let root = parse("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n");
    let m = &root.get("m").unwrap().value;
    assert_eq!(keys(m), ["y", "x"]);
    assert_eq!(text_at(m, &["y"]), "3");
    assert_eq!(text_at(m, &["x"]), "1");
}

#[test]
fn merge_list_earlier_sources_win() {
    let root = parse("a: &a {x: a1, y: a2}\nb: &b {y: b2, z: b3}\nm:\n  <<: [*a, *b]\n  z: own\n");
    let m = &root.get("m").unwrap().value;
    assert_eq!(text_at(m, &["x"]), "a1");
    assert_eq!(text_at(m, &["y"]), "a2");
    assert_eq!(text_at(m, &["z"]), "own");
}

#[test]
fn nested_merges_apply_inside_anchors() {
    let root = parse("a: &a {x: 1}\nb: &b {<<: *a, y: 2}\nm: {<<: *b}\n");
    let m = &root.get("m").unwrap().value;
    assert_eq!(text_at(m, &["x"]), "1");
    assert_eq!(text_at(m, &["y"]), "2");
}

#[test]
fn quoted_merge_key_is_an_ordinary_key() {
    let root = parse("m: {'<<': x}\n");
    assert_eq!(text_at(&root, &["m", "<<"]), "x");
}

#[test]
fn merge_of_a_scalar_is_an_error() {
    let (_, errors) = parse_in(Path::new("/nonexistent"), "m:\n  <<: 5\n", &no_env);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].message.contains("merge key"), "{errors:?}");
    assert_eq!((errors[0].line, errors[0].column), (2, 7));
}

#[test]
fn duplicate_keys_are_errors_at_the_second_key() {
    let (_, errors) = parse_in(
        Path::new("/nonexistent"),
        "a: 1\nb:\n  c: 1\n  c: 2\n",
        &no_env,
    );
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].message,
        "duplicate key \"c\"; it is already set at line 3"
    );
    assert_eq!(errors[0].key_path, "b.c");
    assert_eq!((errors[0].line, errors[0].column), (4, 3));
}

#[test]
fn variables_are_substituted_in_values_not_keys() {
    let env: HashMap<&str, &str> = [("HOST", "broker"), ("K", "nope")].into();
    let lookup = |name: &str| env.get(name).map(|v| v.to_string());
    let (root, errors) = parse_in(
        Path::new("/nonexistent"),
        "url: tcp://${HOST}:${PORT, 1883}\n${K}: 1\nq: '${HOST}'\n",
        &lookup,
    );
    assert!(errors.is_empty(), "{errors:?}");
    let root = root.unwrap();
    assert_eq!(text_at(&root, &["url"]), "tcp://broker:1883");
    assert_eq!(text_at(&root, &["${K}"]), "1");
    assert_eq!(text_at(&root, &["q"]), "broker");
}

#[test]
fn unset_variable_without_default_reads_as_empty_and_is_remembered() {
    let (root, errors) = parse_in(Path::new("/nonexistent"), "a:\n  b: ${NOPE_1}\n", &no_env);
    assert!(
        errors.is_empty(),
        "SAM reads it as empty, not as an error: {errors:?}"
    );
    let root = root.unwrap();
    let b = &root.get("a").unwrap().value.get("b").unwrap().value;
    assert!(b.is_null(), "an empty plain value is null");
    assert_eq!(b.unset_vars, ["NOPE_1"]);
    assert!(b.unset_note().unwrap().contains("NOPE_1 is not set"));
}

#[test]
fn variables_work_in_flow_collections_and_quotes_and_keep_columns() {
    let env: HashMap<&str, &str> = [("DEV", "true")].into();
    let lookup = |name: &str| env.get(name).map(|v| v.to_string());
    let (root, errors) = parse_in(
        Path::new("/nonexistent"),
        "b: {dev_mode: ${DEV, false}, port: ${PORT, 1883}, x: 1}\nl: [${A, a}, \"${B, \"q, r\"}\", ${C, 'c'}]\nw: ${W, \"8000\"}\n",
        &lookup,
    );
    assert!(errors.is_empty(), "{errors:?}");
    let root = root.unwrap();
    let b = &root.get("b").unwrap().value;
    assert_eq!(text_at(b, &["dev_mode"]), "true");
    assert_eq!(text_at(b, &["port"]), "1883");
    // Columns after a substituted variable are those of the source text.
    let x = b.get("x").unwrap();
    assert_eq!((x.key.pos.line, x.key.pos.column), (1, 51));
    let items: Vec<&str> = root
        .get("l")
        .unwrap()
        .value
        .items()
        .unwrap()
        .iter()
        .map(|n| match &n.value {
            NodeValue::Scalar(s) => s.text.as_str(),
            _ => panic!(),
        })
        .collect();
    assert_eq!(items, ["a", "q, r", "c"]);
    // A quoted default is a string, as SAM pastes the quotes into the YAML.
    assert!(
        matches!(&root.get("w").unwrap().value.value, NodeValue::Scalar(s) if s.text == "8000" && !s.plain)
    );
}

#[test]
fn an_include_line_is_pasted_so_its_anchors_work_and_positions_stay_in_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("shared.yaml"),
        "shared_config:\n  - broker: &broker\n      dev_mode: true\n      port: ${P, 1}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("inner.yaml"), "y: 2\n  z: 3\n").unwrap();
    let (root, errors) = parse_in(
        dir.path(),
        "# comment\n!include shared.yaml\n\napps:\n  - broker:\n      <<: *broker\n    cfg:\n      !include 'inner_ok.yaml'\n",
        &no_env,
    );
    // inner_ok.yaml does not exist: reported at the include line.
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!((errors[0].line, errors[0].column), (8, 7));
    assert!(errors[0].message.contains("inner_ok.yaml"), "{errors:?}");
    let root = root.unwrap();
    let app = &root.get("apps").unwrap().value.items().unwrap()[0];
    let broker = &app.get("broker").unwrap().value;
    assert_eq!(text_at(broker, &["dev_mode"]), "true");
    let port = broker.get("port").unwrap();
    assert!(port.key.pos.file.ends_with("shared.yaml"));
    assert_eq!((port.key.pos.line, port.key.pos.column), (4, 7));

    // A syntax error inside an indented pasted file points into that file.
    let (_, errors) = parse_in(dir.path(), "a:\n  !include inner.yaml\n", &no_env);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].file.ends_with("inner.yaml"), "{errors:?}");
    assert_eq!((errors[0].line, errors[0].column), (2, 4));
}

#[test]
fn include_line_cycle_is_an_error_at_the_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), "!include b.yaml\n").unwrap();
    std::fs::write(dir.path().join("b.yaml"), "x: 1\n!include a.yaml\n").unwrap();
    let mut loader = TreeLoader::new(&no_env);
    let root = loader.load_file(&dir.path().join("a.yaml"));
    assert!(root.is_some());
    assert_eq!(loader.errors.len(), 1, "{:?}", loader.errors);
    assert!(loader.errors[0].message.starts_with("include cycle: "));
    assert!(loader.errors[0].file.ends_with("b.yaml"));
    assert_eq!(loader.errors[0].line, 2);
}

#[test]
fn str_tag_keeps_a_plain_scalar_a_string() {
    let root = parse("a: !!str 8000\nb: 8000\n");
    assert!(matches!(&root.get("a").unwrap().value.value, NodeValue::Scalar(s) if !s.plain));
    assert!(matches!(&root.get("b").unwrap().value.value, NodeValue::Scalar(s) if s.plain));
}

#[test]
fn unknown_tags_are_errors() {
    let (_, errors) = parse_in(Path::new("/nonexistent"), "a: !env X\n", &no_env);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].message.contains("unsupported tag !env"));
}

#[test]
fn include_on_a_key_is_an_error() {
    let (_, errors) = parse_in(
        Path::new("/nonexistent"),
        "a: 0\n? !include a.yaml\n: 1\n",
        &no_env,
    );
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].message, "a key cannot carry a tag (!include)");
    // At the start of a line it is SAM's include line, which holds only a name.
    let (_, errors) = parse_in(Path::new("/nonexistent"), "!include a.yaml: 1\n", &no_env);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].message.starts_with("unexpected text \"1\""),
        "{errors:?}"
    );
}

#[test]
fn syntax_errors_name_line_and_column() {
    let (root, errors) = parse_in(Path::new("/nonexistent"), "a: 1\n  b: 2\n", &no_env);
    assert!(root.is_none());
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].line, errors[0].column), (2, 4));
    assert!(errors[0].message.starts_with("YAML syntax error: "));
}

/// Found by `runtime/tests/fuzz.rs`: the parser reports an error at the
/// end of the input on the line after the last, which a file without a
/// final newline does not have (`fuzz.yaml:4:1` for three lines).
#[test]
fn syntax_error_at_the_end_of_a_file_without_final_newline_points_at_its_last_line() {
    let (root, errors) = parse_in(Path::new("/nonexistent"), "key: |\n  text\né", &no_env);
    assert!(root.is_none());
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!((errors[0].line, errors[0].column), (3, 2), "{errors:?}");
    // With the newline, the line after the last exists and is named.
    let (_, errors) = parse_in(Path::new("/nonexistent"), "key: |\n  text\né\n", &no_env);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].line, 4, "{errors:?}");
}

/// Found by `runtime/tests/fuzz.rs`: a lone CR is a line break to the
/// parser, so errors after it were looked up one line off (and past the
/// end, at a wrong column). CRLF and CR files give the LF file's positions.
#[test]
fn errors_in_files_with_cr_or_crlf_line_ends_have_the_lf_positions() {
    for text in ["a: 1\n  b: 2\n", "a: 1\r\n  b: 2\r\n", "a: 1\r  b: 2\r"] {
        let (_, errors) = parse_in(Path::new("/nonexistent"), text, &no_env);
        assert_eq!(errors.len(), 1, "{text:?}: {errors:?}");
        assert_eq!((errors[0].line, errors[0].column), (2, 4), "{text:?}");
    }
    let (node, errors) = parse_in(Path::new("/nonexistent"), "a: 1\rb:\r  c: x", &no_env);
    assert!(errors.is_empty(), "{errors:?}");
    let node = node.expect("tree");
    let x = &node
        .get("b")
        .expect("b")
        .value
        .get("c")
        .expect("c")
        .value
        .pos;
    assert_eq!((x.line, x.column), (3, 6));
}

#[test]
fn empty_file_is_a_null_document() {
    assert!(parse("").is_null());
    assert!(parse("# only a comment\n").is_null());
}

#[test]
fn second_document_is_an_error() {
    let (root, errors) = parse_in(Path::new("/nonexistent"), "a: 1\n---\nb: 2\n", &no_env);
    assert!(root.is_none());
    assert!(errors[0].message.contains("second YAML document"));
}

#[test]
fn include_replaces_the_scalar_and_keeps_its_own_positions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(
        dir.path().join("sub/a.yaml"),
        "x: 1\ninner: !include b.yaml\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("sub/b.yaml"), "\n\ny: ${V, two}\n").unwrap();
    let (root, errors) = parse_in(dir.path(), "top: !include sub/a.yaml\n", &no_env);
    assert!(errors.is_empty(), "{errors:?}");
    let root = root.unwrap();
    assert_eq!(text_at(&root, &["top", "inner", "y"]), "two");
    let y = root
        .get("top")
        .unwrap()
        .value
        .get("inner")
        .unwrap()
        .value
        .get("y")
        .unwrap();
    assert_eq!(*y.key.pos.file, dir.path().join("sub/b.yaml"));
    assert_eq!((y.key.pos.line, y.key.pos.column), (3, 1));
}

#[test]
fn included_anchor_can_be_merged() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("common.yaml"), "dev_mode: true\nurl: x\n").unwrap();
    let (root, errors) = parse_in(
        dir.path(),
        "base: &b !include common.yaml\nm:\n  <<: *b\n  url: y\n",
        &no_env,
    );
    assert!(errors.is_empty(), "{errors:?}");
    let root = root.unwrap();
    assert_eq!(text_at(&root, &["m", "dev_mode"]), "true");
    assert_eq!(text_at(&root, &["m", "url"]), "y");
}

#[test]
fn include_cycle_is_an_error_at_the_include() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yaml"), "b: !include b.yaml\n").unwrap();
    std::fs::write(dir.path().join("b.yaml"), "a: !include a.yaml\n").unwrap();
    let mut loader = TreeLoader::new(&no_env);
    let root = loader.load_file(&dir.path().join("a.yaml"));
    assert!(root.is_some());
    assert_eq!(loader.errors.len(), 1, "{:?}", loader.errors);
    let e = &loader.errors[0];
    assert_eq!(e.file, dir.path().join("b.yaml"));
    assert_eq!((e.line, e.column), (1, 4));
    assert_eq!(e.key_path, "b.a");
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    assert_eq!(
        e.message,
        format!(
            "include cycle: {} -> {} -> {}",
            a.display(),
            b.display(),
            a.display()
        )
    );
}

#[test]
fn missing_include_is_an_error_at_the_include() {
    let dir = tempfile::tempdir().unwrap();
    let (root, errors) = parse_in(dir.path(), "a:\n  b: !include nope.yaml\n", &no_env);
    assert_eq!(errors.len(), 1);
    assert_eq!((errors[0].line, errors[0].column), (2, 6));
    assert!(errors[0].message.starts_with("cannot read included file"));
    assert!(
        root.unwrap()
            .get("a")
            .unwrap()
            .value
            .get("b")
            .unwrap()
            .value
            .reported
    );
}

#[test]
fn alias_bombs_are_stopped() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..8 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let (_, errors) = parse_in(Path::new("/nonexistent"), &text, &no_env);
    assert!(!errors.is_empty());
    assert!(errors[0].message.contains("more than"));
}

/// Parses `text` in `dir` on another thread, so a loader that blocks (an
/// `open` of a FIFO waits for a writer) fails the test instead of hanging it.
fn parse_in_bounded(dir: &Path, text: &str) -> Vec<ConfigError> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (dir, text) = (dir.to_path_buf(), text.to_owned());
    std::thread::spawn(move || {
        let (_, errors) = parse_in(&dir, &text, &no_env);
        let _ = tx.send(errors);
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("the loader blocked on a special file")
}

#[test]
fn include_of_a_fifo_is_refused_without_opening_it() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("pipe.yaml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo runs");
    assert!(made.success());
    let errors = parse_in_bounded(dir.path(), "a:\n  b: !include pipe.yaml\n");
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert_eq!(e.file, dir.path().join("main.yaml"));
    assert_eq!((e.line, e.column), (2, 6));
    assert_eq!(e.key_path, "a.b");
    assert_eq!(
        e.message,
        format!(
            "cannot include {}: it is a FIFO, not a regular file",
            fifo.display()
        )
    );
}

#[test]
fn include_of_a_device_is_refused() {
    let errors = parse_in_bounded(Path::new("/tmp"), "a: !include /dev/null\n");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!((errors[0].line, errors[0].column), (1, 4));
    assert_eq!(
        errors[0].message,
        "cannot include /dev/null: it is a character device, not a regular file"
    );
    let errors = parse_in_bounded(Path::new("/tmp"), "a: !include /tmp\n");
    assert_eq!(
        errors[0].message,
        "cannot include /tmp: it is a directory, not a regular file"
    );
}
