//! SAM's `artifact_management` tools: files an agent's model creates,
//! lists, loads, appends to and deletes, kept per user and per session.
//!
//! Nearly every Solace Agent Mesh agent has `tool_type: builtin-group,
//! group_name: artifact_management`, so amesh implements the group over
//! SAM's `artifact_service: {type: memory | filesystem, base_path}`. Every
//! save makes a new version (numbered from 0, as in SAM); appending saves
//! the latest version plus the chunk. Files are keyed by the user the task
//! runs for and by its session (the A2A context id): a user sees only the
//! files of their own conversation. Only a verified identity may use them,
//! as with stored credentials: in permissive trust mode a merely claimed
//! user id must not open another user's files.
//!
//! On disk a file is `base_path/<scope>/<user>/<session>/<name>/<version>`
//! (its MIME type beside it in `<version>.mime`); every component is
//! percent-encoded, so no name can climb out of `base_path`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine as _;
use serde_json::{Value, json};

use super::tools::BuiltinTool;
use crate::a2a::Part;
use crate::config::{AgentConfig, ArtifactScope, ArtifactServiceKind};

/// Largest artifact (any version), so a looping model cannot fill memory or disk.
pub const MAX_ARTIFACT_BYTES: usize = 16 << 20;
/// Longest text `load_artifact` returns by default (SAM's range 100-100,000).
const DEFAULT_LOAD_CHARS: usize = 20_000;

/// One stored version.
#[derive(Debug, Clone)]
struct Version {
    bytes: Vec<u8>,
    mime_type: String,
}

/// (scope, user, session, file name).
type Key = (String, String, String, String);

enum Backend {
    Memory(Mutex<HashMap<Key, Vec<Version>>>),
    Filesystem(PathBuf),
}

/// The artifact store of one agent.
pub(crate) struct Artifacts {
    backend: Backend,
    scope: String,
}

impl std::fmt::Debug for Artifacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.backend {
            Backend::Memory(_) => "memory".to_owned(),
            Backend::Filesystem(p) => format!("filesystem {}", p.display()),
        };
        f.debug_struct("Artifacts")
            .field("backend", &kind)
            .field("scope", &self.scope)
            .finish()
    }
}

/// Why an artifact tool call failed, in words the model can act on.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArtifactError {
    #[error("{0} is not configured for this agent")]
    NotConfigured(&'static str),
    #[error("artifacts are kept per user, and this request's user is not verified")]
    Unverified,
    #[error("{0} is not an artifact tool")]
    NotAnArtifactTool(&'static str),
    #[error("filename must be 1 to 255 characters")]
    BadFilename,
    #[error("content of MIME type {mime} must be base64: {source}")]
    NotBase64 {
        mime: String,
        source: base64::DecodeError,
    },
    #[error("there is no artifact {0:?} to append to; create it first")]
    NothingToAppendTo(String),
    #[error("artifact {name:?} would be {size} bytes; at most {MAX_ARTIFACT_BYTES}")]
    TooLarge { name: String, size: usize },
    #[error("version must be a whole number")]
    BadVersionNumber,
    #[error("version must be a whole number or \"latest\"")]
    BadVersion,
    #[error("there is no artifact {0:?}")]
    NotFound(String),
    #[error("artifact {name:?} has no version {version}; it has {versions:?}")]
    NoSuchVersion {
        name: String,
        version: u32,
        versions: Vec<u32>,
    },
    #[error("artifact {name:?} has no version {version}")]
    VersionGone { name: String, version: u32 },
    #[error("cannot save the artifact: {0}")]
    Save(std::io::Error),
    #[error("cannot read artifact {name:?}: {source}")]
    Read {
        name: String,
        source: std::io::Error,
    },
    #[error("cannot delete artifact {name:?}: {source}")]
    Delete {
        name: String,
        source: std::io::Error,
    },
}

type Outcome = Result<Vec<Part>, ArtifactError>;

impl Artifacts {
    /// The store `cfg` asks for, when it has any artifact tool.
    pub(crate) fn for_agent(cfg: &AgentConfig) -> anyhow::Result<Option<Self>> {
        let uses = cfg.tools.iter().any(|t| {
            matches!(t, crate::config::ToolConfig::Builtin { tool_name, .. }
                if BuiltinTool::from_name(tool_name).is_some_and(BuiltinTool::is_artifact_tool))
        });
        if !uses {
            return Ok(None);
        }
        let service = cfg.artifact_service.as_ref();
        let scope = match service.map(|s| (s.artifact_scope, &s.artifact_scope_value)) {
            None | Some((ArtifactScope::Namespace, _)) => cfg.namespace.clone(),
            Some((ArtifactScope::App, _)) => cfg.agent_name.clone(),
            Some((ArtifactScope::Custom, value)) => {
                value.clone().unwrap_or_else(|| cfg.namespace.clone())
            }
        };
        let backend = match service.map(|s| (s.kind, s.base_path.as_deref())) {
            None | Some((ArtifactServiceKind::Memory, _)) => {
                Backend::Memory(Mutex::new(HashMap::new()))
            }
            Some((ArtifactServiceKind::Filesystem, Some(base))) => {
                std::fs::create_dir_all(base).map_err(|e| {
                    anyhow::anyhow!("artifact_service.base_path {}: {e}", base.display())
                })?;
                Backend::Filesystem(base.to_path_buf())
            }
            Some((ArtifactServiceKind::Filesystem, None)) => {
                anyhow::bail!("artifact_service type filesystem needs a base_path")
            }
            Some((kind, _)) => anyhow::bail!(
                "artifact_service type {kind:?} is not supported by amesh; use memory or filesystem"
            ),
        };
        Ok(Some(Self { backend, scope }))
    }

    /// Runs artifact tool `tool` for `user` in `session`.
    pub(crate) async fn call(
        &self,
        tool: BuiltinTool,
        user: &str,
        session: &str,
        args: &Value,
    ) -> Outcome {
        let key = |name: &str| {
            (
                self.scope.clone(),
                user.to_owned(),
                session.to_owned(),
                name.to_owned(),
            )
        };
        let filename = || -> Result<String, ArtifactError> {
            let name = args.get("filename").and_then(Value::as_str).unwrap_or("");
            let name = name.trim();
            if name.is_empty() || name.len() > 255 || name.contains('\0') {
                return Err(ArtifactError::BadFilename);
            }
            Ok(name.to_owned())
        };
        match tool {
            BuiltinTool::CreateArtifact | BuiltinTool::AppendToArtifact => {
                let name = filename()?;
                let mime = args
                    .get("mime_type")
                    .and_then(Value::as_str)
                    .unwrap_or("text/plain")
                    .to_owned();
                let field = if tool == BuiltinTool::CreateArtifact {
                    "content"
                } else {
                    "content_chunk"
                };
                let text = args.get(field).and_then(Value::as_str).unwrap_or("");
                let mut bytes = decode(text, &mime)?;
                let k = key(&name);
                let mut mime_type = mime;
                if tool == BuiltinTool::AppendToArtifact {
                    let latest = self
                        .latest(&k)
                        .await?
                        .ok_or_else(|| ArtifactError::NothingToAppendTo(name.clone()))?;
                    let (_, mut old) = latest;
                    old.bytes.append(&mut bytes);
                    bytes = old.bytes;
                    mime_type = old.mime_type;
                }
                if bytes.len() > MAX_ARTIFACT_BYTES {
                    return Err(ArtifactError::TooLarge {
                        name,
                        size: bytes.len(),
                    });
                }
                let version = self.save(&k, Version { bytes, mime_type }).await?;
                Ok(vec![Part::data(
                    json!({"filename": name, "version": version, "status": "success"}),
                )])
            }
            BuiltinTool::ListArtifacts => {
                let list = self.list(&key("")).await?;
                let items: Vec<Value> = list
                    .into_iter()
                    .map(|(name, (version, v))| {
                        json!({"filename": name, "latest_version": version,
                               "mime_type": v.mime_type, "size_bytes": v.bytes.len()})
                    })
                    .collect();
                Ok(vec![Part::data(json!({"artifacts": items}))])
            }
            BuiltinTool::LoadArtifact => {
                let name = filename()?;
                let versions = self.versions(&key(&name)).await?;
                let version = match args.get("version") {
                    Some(Value::Number(n)) => n
                        .as_u64()
                        .and_then(|n| u32::try_from(n).ok())
                        .ok_or(ArtifactError::BadVersionNumber)?,
                    Some(Value::String(s)) if s == "latest" => *versions
                        .last()
                        .ok_or_else(|| ArtifactError::NotFound(name.clone()))?,
                    _ => return Err(ArtifactError::BadVersion),
                };
                if !versions.contains(&version) {
                    return Err(ArtifactError::NoSuchVersion {
                        name,
                        version,
                        versions,
                    });
                }
                let v = self.read(&key(&name), version).await?;
                let limit = args
                    .get("max_content_length")
                    .and_then(Value::as_u64)
                    .map_or(DEFAULT_LOAD_CHARS, |n| n.clamp(100, 100_000) as usize);
                let mut out = json!({"filename": name, "version": version,
                                     "mime_type": v.mime_type, "size_bytes": v.bytes.len()});
                match String::from_utf8(v.bytes) {
                    Ok(text) => {
                        let truncated = text.chars().count() > limit;
                        out["content"] = Value::String(text.chars().take(limit).collect());
                        out["truncated"] = Value::Bool(truncated);
                    }
                    Err(_) => out["note"] = "binary content is not shown".into(),
                }
                Ok(vec![Part::data(out)])
            }
            BuiltinTool::DeleteArtifact => {
                let name = filename()?;
                let deleted = self.delete(&key(&name)).await?;
                if deleted == 0 {
                    return Err(ArtifactError::NotFound(name));
                }
                Ok(vec![Part::data(
                    json!({"filename": name, "deleted_versions": deleted, "status": "success"}),
                )])
            }
            other => Err(ArtifactError::NotAnArtifactTool(other.name())),
        }
    }

    async fn save(&self, k: &Key, v: Version) -> Result<u32, ArtifactError> {
        match &self.backend {
            Backend::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                let versions = m.entry(k.clone()).or_default();
                versions.push(v);
                Ok(u32::try_from(versions.len() - 1).unwrap_or(u32::MAX))
            }
            Backend::Filesystem(base) => {
                let dir = file_dir(base, k);
                let next = self.versions(k).await?.last().map_or(0, |n| n + 1);
                let io = ArtifactError::Save;
                tokio::fs::create_dir_all(&dir).await.map_err(io)?;
                tokio::fs::write(dir.join(format!("{next}.mime")), &v.mime_type)
                    .await
                    .map_err(io)?;
                tokio::fs::write(dir.join(next.to_string()), &v.bytes)
                    .await
                    .map_err(io)?;
                Ok(next)
            }
        }
    }

    /// The version numbers of one file, ascending.
    async fn versions(&self, k: &Key) -> Result<Vec<u32>, ArtifactError> {
        match &self.backend {
            Backend::Memory(m) => {
                let m = m.lock().unwrap_or_else(|p| p.into_inner());
                let n = m.get(k).map_or(0, Vec::len);
                Ok((0..n).filter_map(|i| u32::try_from(i).ok()).collect())
            }
            Backend::Filesystem(base) => {
                let mut out = Vec::new();
                let Ok(mut dir) = tokio::fs::read_dir(file_dir(base, k)).await else {
                    return Ok(out);
                };
                while let Ok(Some(entry)) = dir.next_entry().await {
                    if let Some(n) = entry.file_name().to_str().and_then(|s| s.parse().ok()) {
                        out.push(n);
                    }
                }
                out.sort_unstable();
                Ok(out)
            }
        }
    }

    async fn read(&self, k: &Key, version: u32) -> Result<Version, ArtifactError> {
        match &self.backend {
            Backend::Memory(m) => {
                let m = m.lock().unwrap_or_else(|p| p.into_inner());
                m.get(k)
                    .and_then(|v| v.get(version as usize))
                    .cloned()
                    .ok_or_else(|| ArtifactError::VersionGone {
                        name: k.3.clone(),
                        version,
                    })
            }
            Backend::Filesystem(base) => {
                let dir = file_dir(base, k);
                let io = |source| ArtifactError::Read {
                    name: k.3.clone(),
                    source,
                };
                let bytes = tokio::fs::read(dir.join(version.to_string()))
                    .await
                    .map_err(io)?;
                let mime_type = tokio::fs::read_to_string(dir.join(format!("{version}.mime")))
                    .await
                    .unwrap_or_else(|_| "application/octet-stream".into());
                Ok(Version { bytes, mime_type })
            }
        }
    }

    async fn latest(&self, k: &Key) -> Result<Option<(u32, Version)>, ArtifactError> {
        match self.versions(k).await?.last() {
            Some(&n) => Ok(Some((n, self.read(k, n).await?))),
            None => Ok(None),
        }
    }

    /// The files of `session_key`'s user and session (its file name is
    /// ignored), each with its latest version.
    async fn list(
        &self,
        session_key: &Key,
    ) -> Result<BTreeMap<String, (u32, Version)>, ArtifactError> {
        let names: Vec<String> = match &self.backend {
            Backend::Memory(m) => {
                let m = m.lock().unwrap_or_else(|p| p.into_inner());
                m.keys()
                    .filter(|k| {
                        (&k.0, &k.1, &k.2) == (&session_key.0, &session_key.1, &session_key.2)
                    })
                    .map(|k| k.3.clone())
                    .collect()
            }
            Backend::Filesystem(base) => {
                let dir = file_dir(base, session_key);
                let dir = dir.parent().unwrap_or(&dir).to_path_buf();
                let mut names = Vec::new();
                if let Ok(mut entries) = tokio::fs::read_dir(&dir).await {
                    while let Ok(Some(entry)) = entries.next_entry().await {
                        if let Some(name) = entry.file_name().to_str().and_then(decode_component) {
                            names.push(name);
                        }
                    }
                }
                names
            }
        };
        let mut out = BTreeMap::new();
        for name in names {
            let mut k = session_key.clone();
            k.3 = name.clone();
            if let Some(latest) = self.latest(&k).await? {
                out.insert(name, latest);
            }
        }
        Ok(out)
    }

    /// Deletes every version of a file; returns how many there were.
    async fn delete(&self, k: &Key) -> Result<usize, ArtifactError> {
        match &self.backend {
            Backend::Memory(m) => {
                let mut m = m.lock().unwrap_or_else(|p| p.into_inner());
                Ok(m.remove(k).map_or(0, |v| v.len()))
            }
            Backend::Filesystem(base) => {
                let n = self.versions(k).await?.len();
                if n > 0 {
                    tokio::fs::remove_dir_all(file_dir(base, k))
                        .await
                        .map_err(|source| ArtifactError::Delete {
                            name: k.3.clone(),
                            source,
                        })?;
                }
                Ok(n)
            }
        }
    }
}

/// Text for text-like MIME types; base64 for anything else.
fn decode(text: &str, mime: &str) -> Result<Vec<u8>, ArtifactError> {
    let textual = mime.starts_with("text/")
        || ["json", "xml", "yaml", "csv", "javascript", "markdown"]
            .iter()
            .any(|t| mime.contains(t));
    if textual {
        return Ok(text.as_bytes().to_vec());
    }
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|source| ArtifactError::NotBase64 {
            mime: mime.to_owned(),
            source,
        })
}

/// `base/<scope>/<user>/<session>/<name>`, every part encoded.
fn file_dir(base: &Path, k: &Key) -> PathBuf {
    let mut dir = base.to_path_buf();
    for part in [&k.0, &k.1, &k.2, &k.3] {
        dir.push(encode_component(part));
    }
    dir
}

/// Percent-encodes all but `[A-Za-z0-9_-]` and a `.` that is not first:
/// no separator, no `..`, no hidden file, no empty component.
fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 1);
    for (i, b) in s.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push('%');
    }
    out
}

fn decode_component(s: &str) -> Option<String> {
    if s == "%" {
        return Some(String::new());
    }
    let mut bytes = Vec::with_capacity(s.len());
    let mut it = s.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hex = [it.next()?, it.next()?];
            bytes.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            bytes.push(b);
        }
    }
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
#[path = "artifacts_tests.rs"]
mod tests;
