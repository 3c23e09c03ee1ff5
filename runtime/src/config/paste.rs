//! `!include file` lines, pasted as text the way Solace Agent Mesh does.
//!
//! Nearly every SAM config opens with `!include shared_config.yaml` on a
//! line of its own and then uses the anchors that file defines
//! (`<<: *broker_connection`, `model: *general_model`). YAML anchors do not
//! cross documents, so SAM's loader (solace-ai-connector) pastes the
//! included file's text in place of the line, indented like the line,
//! before any YAML is parsed; its pattern is
//! `^([ \t]*)!include\s+(["']?[^"\s']+)["']?`. amesh does the same, and
//! remembers for every line of the pasted text which file and line it came
//! from and how much indentation was added, so errors still point into the
//! included file. `key: !include file` (a tag on a value) remains amesh's
//! node-level include, resolved while the tree is built.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{ConfigError, Pos};
use super::yaml::TreeLoader;

/// Most text one file may grow to by pasting includes: far above any real
/// config, low enough that a file including itself many times over stops.
const MAX_TEXT: usize = 16 << 20;

/// Why an `!include` could not be pasted; reported as a config error at
/// the include's line.
#[derive(Debug, thiserror::Error)]
pub(super) enum IncludeError {
    #[error("include cycle: {}", .0.join(" -> "))]
    Cycle(Vec<String>),
    #[error("includes make this config longer than {} MiB", MAX_TEXT >> 20)]
    TooLong,
    #[error("cannot read included file {}: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot include {}: it is {kind}, not a regular file", .path.display())]
    NotAFile { path: PathBuf, kind: &'static str },
}

/// An include line with more than the file name on it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unexpected text {tail:?} after `!include {name}`; an include line holds only the file name"
)]
pub(super) struct TrailingText {
    tail: String,
    name: String,
}

/// Where one line of pasted text was written.
#[derive(Debug, Clone)]
pub struct LineOrigin {
    pub file: Arc<PathBuf>,
    /// 1-based line in `file`.
    pub line: usize,
    /// Indentation characters added in front of the line by pasting.
    pub shift: usize,
}

/// A file's text with its `!include` lines replaced.
pub struct Pasted {
    pub text: String,
    /// One entry per line of `text`.
    pub lines: Vec<LineOrigin>,
}

/// The lines of `text` as YAML counts them: LF, CRLF and a lone CR each
/// end one. The pasted text joins them with LF, so the line numbers of
/// the parser's positions index [`Pasted::lines`] even in files saved
/// with CR line ends (a lone CR once shifted every later error).
fn yaml_lines(text: &str) -> impl Iterator<Item = &str> {
    text.split('\n')
        .flat_map(|line| line.strip_suffix('\r').unwrap_or(line).split('\r'))
}

impl TreeLoader<'_> {
    /// Pastes the `!include` lines of `text` (the content of `file`).
    pub(super) fn paste_includes(&mut self, text: &str, file: &Arc<PathBuf>) -> Pasted {
        let mut out = Pasted {
            text: String::with_capacity(text.len()),
            lines: Vec::new(),
        };
        self.paste_into(text, file, "", &mut out);
        out
    }

    fn paste_into(&mut self, text: &str, file: &Arc<PathBuf>, indent: &str, out: &mut Pasted) {
        let shift = indent.chars().count();
        for (i, line) in yaml_lines(text).enumerate() {
            let origin = LineOrigin {
                file: file.clone(),
                line: i + 1,
                shift,
            };
            let line = match include_line(line) {
                Some(Ok((lead, name))) => {
                    let site = Pos {
                        file: file.clone(),
                        line: i + 1,
                        column: lead.chars().count() + 1,
                    };
                    if let Err(e) = self.paste_file(name, &site, &format!("{indent}{lead}"), out) {
                        self.errors.push(ConfigError::at(&site, "", e.to_string()));
                    }
                    // The include line itself stays, blank, so line counts match.
                    ""
                }
                Some(Err(trailing)) => {
                    let site = Pos {
                        file: file.clone(),
                        line: i + 1,
                        column: 1,
                    };
                    self.errors
                        .push(ConfigError::at(&site, "", trailing.to_string()));
                    ""
                }
                None => line,
            };
            if i > 0 || !out.text.is_empty() {
                out.text.push('\n');
            }
            out.text.push_str(indent);
            out.text.push_str(line);
            out.lines.push(origin);
        }
    }

    /// Pastes file `name` (relative to the including file) at `indent`.
    fn paste_file(
        &mut self,
        name: &str,
        site: &Pos,
        indent: &str,
        out: &mut Pasted,
    ) -> Result<(), IncludeError> {
        let dir = site.file.parent().map(PathBuf::from).unwrap_or_default();
        let target = lexically_normal(&dir.join(name));
        let canonical = std::fs::canonicalize(&target).unwrap_or_else(|_| target.clone());
        if self.include_stack.iter().any(|(c, _)| *c == canonical) {
            let chain: Vec<String> = self
                .include_stack
                .iter()
                .skip_while(|(c, _)| *c != canonical)
                .map(|(_, shown)| shown.display().to_string())
                .chain(std::iter::once(target.display().to_string()))
                .collect();
            return Err(IncludeError::Cycle(chain));
        }
        let text = read_included(&target)?;
        if out.text.len().saturating_add(text.len()) > MAX_TEXT {
            return Err(IncludeError::TooLong);
        }
        self.include_stack.push((canonical, target.clone()));
        self.paste_into(&text, &Arc::new(target), indent, out);
        self.include_stack.pop();
        Ok(())
    }
}

/// The text of an `!include`d file, which must be a regular file.
///
/// A FIFO would block the loader in `open` until some writer came (forever,
/// for `amesh config check`), and a device like `/dev/zero` or
/// `/dev/urandom` never ends; an include pointing there is a mistake or an
/// attack. So the file type is checked with `stat` before anything is
/// opened, the file is opened non-blocking, and the type checked again on
/// the open file in case the path was swapped in between.
pub(super) fn read_included(path: &Path) -> Result<String, IncludeError> {
    use std::io::Read as _;
    let unreadable = |source: std::io::Error| IncludeError::Unreadable {
        path: path.to_path_buf(),
        source,
    };
    let refused = |meta: &std::fs::Metadata| IncludeError::NotAFile {
        path: path.to_path_buf(),
        kind: file_kind(&meta.file_type()),
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(refused(&meta));
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let mut file = options.open(path).map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(refused(&meta));
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(unreadable)?;
    Ok(text)
}

/// "a FIFO", "a directory", ...: what a path that is not a regular file is.
fn file_kind(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}

/// `a/b/../c` as `a/c`, so messages about `!include ../shared_config.yaml`
/// name the file as an operator would (symlinks are not resolved).
fn lexically_normal(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// `Some(Ok((indentation, file name)))` for a line SAM treats as an include,
/// `Some(Err(..))` for one that names a file but has more on the line.
fn include_line(line: &str) -> Option<Result<(&str, &str), TrailingText>> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let body = line.trim_start_matches([' ', '\t']);
    let lead = &line[..line.len() - body.len()];
    let after = body.strip_prefix("!include")?;
    if !after.starts_with([' ', '\t']) {
        return None;
    }
    let after = after.trim_start_matches([' ', '\t']);
    let unquoted = after.strip_prefix(['"', '\'']).unwrap_or(after);
    let end = unquoted
        .find(|c: char| c == '"' || c == '\'' || c.is_whitespace())
        .unwrap_or(unquoted.len());
    let name = &unquoted[..end];
    if name.is_empty() {
        return None;
    }
    let tail = unquoted[end..]
        .strip_prefix(['"', '\''])
        .unwrap_or(&unquoted[end..]);
    let tail = tail.trim();
    if !tail.is_empty() && !tail.starts_with('#') {
        return Some(Err(TrailingText {
            tail: tail.to_owned(),
            name: name.to_owned(),
        }));
    }
    Some(Ok((lead, name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_paths_are_shown_without_dot_dot() {
        assert_eq!(
            lexically_normal(Path::new("configs/agents/../shared.yaml")),
            Path::new("configs/shared.yaml")
        );
        assert_eq!(
            lexically_normal(Path::new("../a/./b.yaml")),
            Path::new("../a/b.yaml")
        );
        assert_eq!(lexically_normal(Path::new("a/..")), Path::new("."));
    }

    #[test]
    fn include_lines_are_recognised_as_sam_does() {
        assert_eq!(include_line("!include a.yaml"), Some(Ok(("", "a.yaml"))));
        assert_eq!(
            include_line("    !include \"../b.yaml\"  # shared\r"),
            Some(Ok(("    ", "../b.yaml")))
        );
        assert_eq!(
            include_line("\t!include 'c.yaml'"),
            Some(Ok(("\t", "c.yaml")))
        );
        assert_eq!(include_line("key: !include a.yaml"), None);
        assert_eq!(include_line("!include"), None);
        assert_eq!(include_line("!includes a"), None);
        assert!(matches!(include_line("!include a.yaml b"), Some(Err(_))));
    }
}
