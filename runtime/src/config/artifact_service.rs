//! `artifact_service:` of an agent: where the artifact tools (SAM's
//! `artifact_management` group, `agent/artifacts.rs`) keep their files.
//! SAM's cloud stores are accepted so SAM configs load; using one with the
//! artifact tools is refused (`start_checks.rs`).

use std::path::PathBuf;

use serde::Deserialize;

/// `artifact_service:` of an agent, as SAM writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactServiceConfig {
    #[serde(rename = "type")]
    pub kind: ArtifactServiceKind,
    /// Directory of `type: filesystem`; relative to the config file.
    #[serde(default)]
    pub base_path: Option<PathBuf>,
    /// What the stored files are shared by besides user and session:
    /// `namespace` (every agent of the namespace), `app` (this agent), or
    /// `custom` (`artifact_scope_value`).
    #[serde(default)]
    pub artifact_scope: ArtifactScope,
    #[serde(default)]
    pub artifact_scope_value: Option<String>,
    // SAM's cloud stores (s3, gcs, azure), which amesh lacks: accepted so
    // the block loads; `type` says whether it can be used. Their secrets
    // are never kept.
    #[serde(default, rename = "bucket_name")]
    _bucket_name: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "region")]
    _region: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "endpoint_url")]
    _endpoint_url: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "container_name")]
    _container_name: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "account_name")]
    _account_name: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "connection_string")]
    _connection_string: Option<serde::de::IgnoredAny>,
    #[serde(default, rename = "account_key")]
    _account_key: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactServiceKind {
    Memory,
    Filesystem,
    /// SAM's cloud stores: refused where the artifact tools would use them.
    S3,
    Gcs,
    Azure,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ArtifactScope {
    #[default]
    Namespace,
    App,
    Custom,
}
