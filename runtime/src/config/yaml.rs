//! A YAML tree whose every node knows its file, line and column.
//!
//! Built from `saphyr-parser` events rather than a generic YAML value type,
//! because the config loader must point at the exact key or value of any
//! error, also inside `!include`d files and anchored blocks. While building,
//! this module resolves the YAML features operators use in agent-mesh
//! configs: anchors and aliases, merge keys (`<<: *a`, `<<: [*a, *b]`),
//! `!include file.yaml` and `${VAR, default}` substitution in values.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Tag};

use super::error::{ConfigError, Pos};
use super::node::{Entry, Key, Node, NodeValue, Scalar, join_key};
use super::paste::{LineOrigin, read_included};
use super::scalar::EnvLookup;
use super::vars::{self, VarRef};

/// Most nodes one file set may expand to through aliases and includes. A
/// guard against "billion laughs" documents, far above any real config.
const MAX_NODES: usize = 200_000;

/// Loads YAML files into [`Node`] trees, following `!include`s, and
/// collects every error on the way. One `TreeLoader` serves a whole
/// `load_files` call so the expansion budget covers all files.
pub struct TreeLoader<'e> {
    env: EnvLookup<'e>,
    pub errors: Vec<ConfigError>,
    /// Files being loaded, outermost first: (canonical path, display path).
    pub(super) include_stack: Vec<(PathBuf, PathBuf)>,
    expanded: usize,
    /// Every `${...}` masked so far (see `vars.rs`), by placeholder index.
    vars: Vec<VarRef>,
}

impl<'e> TreeLoader<'e> {
    pub fn new(env: EnvLookup<'e>) -> Self {
        Self {
            env,
            errors: Vec::new(),
            include_stack: Vec::new(),
            expanded: 0,
            vars: Vec::new(),
        }
    }

    fn error(&mut self, pos: &Pos, key_path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::at(pos, key_path, message));
    }

    /// Reads and parses a top-level config file. `None` when it cannot be
    /// read or parsed; the reason is in `errors`.
    pub fn load_file(&mut self, path: &Path) -> Option<Node> {
        let file = Arc::new(path.to_path_buf());
        match std::fs::read_to_string(path) {
            Ok(text) => self.load_source(&text, file, "", None),
            Err(e) => {
                self.error(&Pos::whole_file(file), "", format!("cannot read file: {e}"));
                None
            }
        }
    }

    /// Parses YAML text as if it were the content of `file` (includes are
    /// resolved relative to `file`'s directory).
    pub fn load_str(&mut self, text: &str, file: &Path) -> Option<Node> {
        self.load_source(text, Arc::new(file.to_path_buf()), "", None)
    }

    /// Loads the target of an `!include` written at `site` (key path
    /// `key_path`). Cycles and unreadable files are errors at the site.
    fn load_include(&mut self, target: &Path, key_path: &str, site: &Pos) -> Option<Node> {
        let text = match read_included(target) {
            Ok(text) => text,
            Err(e) => {
                self.error(site, key_path, e.to_string());
                return None;
            }
        };
        self.load_source(&text, Arc::new(target.to_path_buf()), key_path, Some(site))
    }

    fn load_source(
        &mut self,
        text: &str,
        file: Arc<PathBuf>,
        key_path: &str,
        site: Option<&Pos>,
    ) -> Option<Node> {
        let canonical = std::fs::canonicalize(file.as_ref()).unwrap_or_else(|_| file.to_path_buf());
        if self.include_stack.iter().any(|(c, _)| *c == canonical) {
            let chain: Vec<String> = self
                .include_stack
                .iter()
                .skip_while(|(c, _)| *c != canonical)
                .map(|(_, shown)| shown.display().to_string())
                .chain(std::iter::once(file.display().to_string()))
                .collect();
            let pos = site
                .cloned()
                .unwrap_or_else(|| Pos::whole_file(file.clone()));
            self.error(
                &pos,
                key_path,
                format!("include cycle: {}", chain.join(" -> ")),
            );
            return None;
        }
        self.include_stack.push((canonical, file.to_path_buf()));
        let pasted = self.paste_includes(text, &file);
        let masked = vars::mask(&pasted.text, &mut self.vars);
        let node = Builder::new(self, file, key_path, pasted.lines).run(&masked);
        self.include_stack.pop();
        node
    }

    /// Counts nodes made by alias expansion or inclusion; false once the
    /// budget is spent.
    fn charge(&mut self, nodes: usize) -> bool {
        self.expanded = self.expanded.saturating_add(nodes);
        self.expanded <= MAX_NODES
    }
}

/// A container being built.
enum Frame {
    Seq {
        pos: Pos,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Pos,
        anchor: usize,
        entries: Vec<Entry>,
        merges: Vec<Node>,
        key: Option<PendingKey>,
    },
}

/// The key a mapping's next value belongs to.
enum PendingKey {
    Key(Key),
    Merge,
    /// Invalid key (already reported): drop the value.
    Skip,
}

/// Turns the event stream of one document into a [`Node`].
struct Builder<'l, 'e> {
    loader: &'l mut TreeLoader<'e>,
    file: Arc<PathBuf>,
    /// Where each line of the text came from (`!include` lines are pasted).
    lines: Vec<LineOrigin>,
    /// Key path of this document's root (non-empty for included files).
    base_path: String,
    frames: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    /// The end of a text without a final newline. The parser reports
    /// "end of input" on the line after the last, which such a file does
    /// not have; `file:line:column` must name a place an editor can show.
    end: Option<Pos>,
}

impl<'l, 'e> Builder<'l, 'e> {
    fn new(
        loader: &'l mut TreeLoader<'e>,
        file: Arc<PathBuf>,
        base_path: &str,
        lines: Vec<LineOrigin>,
    ) -> Self {
        Self {
            loader,
            file,
            lines,
            base_path: base_path.to_owned(),
            frames: Vec::new(),
            anchors: HashMap::new(),
            root: None,
            end: None,
        }
    }

    /// The position in the file the text at `m` was written in.
    fn pos(&self, m: Marker) -> Pos {
        match m.line().checked_sub(1).and_then(|i| self.lines.get(i)) {
            Some(origin) => Pos {
                file: origin.file.clone(),
                line: origin.line,
                column: (m.col() + 1).saturating_sub(origin.shift).max(1),
            },
            None => self.end.clone().unwrap_or_else(|| Pos {
                file: self.file.clone(),
                line: m.line(),
                column: m.col() + 1,
            }),
        }
    }

    /// Where `text` ends, when it does not end with a newline.
    fn end_of(&self, text: &str) -> Option<Pos> {
        if text.is_empty() || text.ends_with('\n') {
            return None;
        }
        let origin = self.lines.last()?;
        let width = text.rsplit('\n').next().map_or(0, |l| l.chars().count());
        Some(Pos {
            file: origin.file.clone(),
            line: origin.line,
            column: (width + 1).saturating_sub(origin.shift).max(1),
        })
    }

    /// Key path of the node about to be completed.
    fn current_path(&self) -> String {
        let mut path = self.base_path.clone();
        for frame in &self.frames {
            match frame {
                Frame::Seq { items, .. } => path.push_str(&format!("[{}]", items.len())),
                Frame::Map {
                    key: Some(PendingKey::Key(k)),
                    ..
                } => path = join_key(&path, &k.text),
                Frame::Map {
                    key: Some(PendingKey::Merge),
                    ..
                } => path = join_key(&path, "<<"),
                Frame::Map { .. } => {}
            }
        }
        path
    }

    fn error(&mut self, pos: &Pos, message: impl Into<String>) {
        let path = self.current_path();
        self.loader.error(pos, &path, message);
    }

    fn run(mut self, text: &str) -> Option<Node> {
        self.end = self.end_of(text);
        let mut documents = 0;
        for event in Parser::new_from_str(text) {
            let (event, span) = match event {
                Ok(ok) => ok,
                Err(e) => {
                    // No key path: the parser fails after closing what it
                    // could, so the path at this point would mislead.
                    let pos = self.pos(*e.marker());
                    self.loader
                        .error(&pos, "", format!("YAML syntax error: {}", e.info()));
                    return None;
                }
            };
            let pos = self.pos(span.start);
            match event {
                Event::DocumentStart(_) => {
                    documents += 1;
                    if documents > 1 {
                        self.error(
                            &pos,
                            "a second YAML document (`---`) in one file; put each config in its own file",
                        );
                        return None;
                    }
                }
                Event::Alias(id) => {
                    let node = self.alias(id, &pos);
                    self.push(node);
                }
                Event::Scalar(text, style, anchor, tag) => {
                    let node = self.scalar(text, style, tag, pos);
                    self.finish(node, anchor);
                }
                Event::SequenceStart(anchor, tag) => {
                    self.container_tag(tag.as_deref(), &pos, "seq");
                    self.frames.push(Frame::Seq {
                        pos,
                        anchor,
                        items: Vec::new(),
                    });
                }
                Event::MappingStart(anchor, tag) => {
                    self.container_tag(tag.as_deref(), &pos, "map");
                    self.frames.push(Frame::Map {
                        pos,
                        anchor,
                        entries: Vec::new(),
                        merges: Vec::new(),
                        key: None,
                    });
                }
                Event::SequenceEnd | Event::MappingEnd => self.close(),
                Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
            }
        }
        // An empty file is an empty config, not an error.
        Some(self.root.unwrap_or_else(|| {
            Node::new(
                Pos {
                    file: self.file.clone(),
                    line: 1,
                    column: 1,
                },
                NodeValue::Scalar(Scalar {
                    text: String::new(),
                    plain: true,
                }),
            )
        }))
    }

    /// Registers `anchor` (0 = none) for `node` and attaches it to its parent.
    fn finish(&mut self, node: Node, anchor: usize) {
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        self.push(node);
    }

    fn alias(&mut self, id: usize, pos: &Pos) -> Node {
        let Some(node) = self.anchors.get(&id).cloned() else {
            // The parser rejects unknown anchors, so this is an alias to a
            // node that contains it.
            self.error(
                pos,
                "alias refers to the block that contains it (recursive alias)",
            );
            return Node::reported_null(pos.clone());
        };
        if !self.loader.charge(node.count()) {
            self.error(
                pos,
                format!("aliases expand this config to more than {MAX_NODES} nodes"),
            );
            return Node::reported_null(pos.clone());
        }
        node
    }

    /// Only `!include` and the YAML core tags mean something to amesh; any
    /// other tag is reported rather than silently ignored.
    fn container_tag(&mut self, tag: Option<&Tag>, pos: &Pos, expected: &str) {
        let Some(tag) = tag else { return };
        if tag.is_yaml_core_schema() && tag.suffix == expected {
            return;
        }
        if tag.handle == "!" && tag.suffix == "include" {
            self.error(
                pos,
                "!include takes a file name, like `!include common.yaml`",
            );
        } else {
            self.error(
                pos,
                format!("unsupported tag {tag}; amesh understands !include"),
            );
        }
    }

    fn scalar(
        &mut self,
        text: Cow<'_, str>,
        style: ScalarStyle,
        tag: Option<Cow<'_, Tag>>,
        pos: Pos,
    ) -> Node {
        let mut plain = style == ScalarStyle::Plain;
        let at_key = matches!(self.frames.last(), Some(Frame::Map { key: None, .. }));
        let mut include = false;
        if let Some(tag) = tag.as_deref() {
            if at_key && !tag.is_yaml_core_schema() {
                self.error(&pos, format!("a key cannot carry a tag ({tag})"));
            } else if tag.handle == "!" && tag.suffix == "include" {
                include = true;
            } else if tag.is_yaml_core_schema() {
                // `!!str 8000` is the string "8000"; other core tags only
                // restate what the core schema already infers.
                if tag.suffix == "str" {
                    plain = false;
                }
            } else {
                self.error(
                    &pos,
                    format!("unsupported tag {tag}; amesh understands !include"),
                );
            }
        }
        if at_key {
            return Node::new(
                pos,
                NodeValue::Scalar(Scalar {
                    text: vars::restore(&text, &self.loader.vars),
                    plain,
                }),
            );
        }
        let expanded = vars::expand(&text, &self.loader.vars, self.loader.env);
        if include {
            return self.include(&expanded.text, pos);
        }
        let mut node = Node::new(
            pos,
            NodeValue::Scalar(Scalar {
                text: expanded.text,
                // `${A, "8000"}` pastes a quoted string in SAM.
                plain: plain && !expanded.quoted,
            }),
        );
        node.unset_vars = expanded.unset;
        node
    }

    /// Replaces `!include NAME` by the content of NAME, relative to this
    /// file's directory. The included nodes keep their own file positions.
    fn include(&mut self, name: &str, pos: Pos) -> Node {
        if name.trim().is_empty() {
            self.error(
                &pos,
                "!include needs a file name, like `!include common.yaml`",
            );
            return Node::reported_null(pos);
        }
        let dir = pos.file.parent().map(Path::to_path_buf).unwrap_or_default();
        let target = dir.join(name.trim());
        let path = self.current_path();
        let Some(node) = self.loader.load_include(&target, &path, &pos) else {
            return Node::reported_null(pos);
        };
        if !self.loader.charge(node.count()) {
            self.error(
                &pos,
                format!("includes expand this config to more than {MAX_NODES} nodes"),
            );
            return Node::reported_null(pos);
        }
        node
    }

    /// Attaches a completed node to the open container (or makes it the root).
    fn push(&mut self, node: Node) {
        let path = self.current_path();
        let Some(frame) = self.frames.last_mut() else {
            if self.root.is_none() {
                self.root = Some(node);
            }
            return;
        };
        let problem = match frame {
            Frame::Seq { items, .. } => {
                items.push(node);
                None
            }
            Frame::Map {
                entries,
                merges,
                key,
                ..
            } => match key.take() {
                None => {
                    let (pending, problem) = make_key(node);
                    *key = Some(pending);
                    problem
                }
                Some(PendingKey::Key(k)) => {
                    if let Some(first) = entries.iter().find(|e| e.key.text == k.text) {
                        let message = format!(
                            "duplicate key {:?}; it is already set at line {}",
                            k.text, first.key.pos.line
                        );
                        Some((k.pos, message))
                    } else {
                        entries.push(Entry {
                            key: k,
                            value: node,
                        });
                        None
                    }
                }
                Some(PendingKey::Merge) => {
                    merges.push(node);
                    None
                }
                Some(PendingKey::Skip) => None,
            },
        };
        if let Some((pos, message)) = problem {
            self.loader.error(&pos, &path, message);
        }
    }

    /// Ends the innermost container: applies merge keys and attaches it.
    fn close(&mut self) {
        let Some(frame) = self.frames.pop() else {
            return;
        };
        let (node, anchor) = match frame {
            Frame::Seq { pos, anchor, items } => (Node::new(pos, NodeValue::Seq(items)), anchor),
            Frame::Map {
                pos,
                anchor,
                mut entries,
                merges,
                ..
            } => {
                for source in merges {
                    self.merge(&mut entries, source);
                }
                (Node::new(pos, NodeValue::Map(entries)), anchor)
            }
        };
        self.finish(node, anchor);
    }

    /// Applies one `<<` value. Keys already present win, so explicit keys
    /// beat merged ones and earlier sources in `<<: [*a, *b]` beat later ones.
    fn merge(&mut self, entries: &mut Vec<Entry>, source: Node) {
        if source.reported {
            return;
        }
        match source.value {
            NodeValue::Map(from) => merge_entries(entries, from),
            NodeValue::Seq(items) => {
                for item in items {
                    match item.value {
                        NodeValue::Map(from) => merge_entries(entries, from),
                        _ if item.reported => {}
                        _ => self.error(
                            &item.pos,
                            "a merge key list (`<<: [*a, *b]`) may only hold mappings",
                        ),
                    }
                }
            }
            NodeValue::Scalar(_) => self.error(
                &source.pos,
                "a merge key (`<<`) takes a mapping or a list of mappings, like `<<: *defaults`",
            ),
        }
    }
}

fn merge_entries(entries: &mut Vec<Entry>, from: Vec<Entry>) {
    for entry in from {
        if !entries.iter().any(|e| e.key.text == entry.key.text) {
            entries.push(entry);
        }
    }
}

/// A mapping key from a completed node: a plain `<<` is a merge key; only
/// scalars can be keys in a config.
fn make_key(node: Node) -> (PendingKey, Option<(Pos, String)>) {
    match node.value {
        NodeValue::Scalar(s) if s.plain && s.text == "<<" => (PendingKey::Merge, None),
        NodeValue::Scalar(s) => (
            PendingKey::Key(Key {
                text: s.text,
                pos: node.pos,
            }),
            None,
        ),
        _ => (
            PendingKey::Skip,
            Some((
                node.pos,
                "a key must be a plain name, not a mapping or a list".to_owned(),
            )),
        ),
    }
}

#[cfg(test)]
#[path = "yaml_tests.rs"]
mod tests;
