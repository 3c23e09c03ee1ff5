//! Config errors as operators read them: `file:line:column: key.path: message`.
//!
//! The loader never stops at the first problem: `amesh config check a.yaml
//! b.yaml` should list everything that is wrong in one run, so the loader
//! returns [`ConfigErrors`], a list, rather than a single error.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// A position in a YAML source file. Every node of the config tree carries
/// one, so any error can point at the exact key or value it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    /// The file as the operator named it (or as an `!include` resolved it).
    pub file: Arc<PathBuf>,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl Pos {
    /// A position that stands for "the file as a whole" (unreadable file).
    pub fn whole_file(file: Arc<PathBuf>) -> Self {
        Self {
            file,
            line: 0,
            column: 0,
        }
    }
}

/// One problem in a config, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the error is about the file as a whole.
    pub line: usize,
    /// 1-based; 0 when the error is about the file as a whole.
    pub column: usize,
    /// Dotted path of the key, like `apps[0].app_config.namespace`; empty
    /// when the error is not about a key (syntax error at the top, unreadable file).
    pub key_path: String,
    pub message: String,
}

impl ConfigError {
    /// An error at `pos` about the key at `key_path`.
    pub fn at(pos: &Pos, key_path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: pos.file.as_ref().clone(),
            line: pos.line,
            column: pos.column,
            key_path: key_path.into(),
            message: message.into(),
        }
    }
}

/// `{file}:{line}:{column}: {key_path}: {message}`. The position is left out
/// when the error concerns the whole file (line 0), and the key path when
/// there is none, so no line ever shows an empty `: :` segment.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        if !self.key_path.is_empty() {
            write!(f, ": {}", self.key_path)?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

/// Every problem found while loading a set of config files, in the order
/// they were found (file by file, then cross-file checks).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

/// One error per line, no trailing newline.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_has_file_position_path_and_message() {
        let pos = Pos {
            file: Arc::new(PathBuf::from("configs/agent.yaml")),
            line: 14,
            column: 7,
        };
        let e = ConfigError::at(&pos, "apps[0].name", "bad");
        assert_eq!(e.to_string(), "configs/agent.yaml:14:7: apps[0].name: bad");
    }

    #[test]
    fn display_leaves_out_missing_position_and_path() {
        let e = ConfigError::at(
            &Pos::whole_file(Arc::new(PathBuf::from("x.yaml"))),
            "",
            "cannot read file",
        );
        assert_eq!(e.to_string(), "x.yaml: cannot read file");
        let errs = ConfigErrors(vec![e.clone(), e]);
        assert_eq!(
            errs.to_string(),
            "x.yaml: cannot read file\nx.yaml: cannot read file"
        );
    }
}
