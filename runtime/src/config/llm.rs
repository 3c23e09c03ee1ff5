//! `model:` of an agent: which language model its reasoning loop talks to.
//!
//! Written as Solace Agent Mesh writes it (SAM hands the block to LiteLLM):
//! either a string in LiteLLM's `provider/model` naming
//! (`openai/gpt-4o`, `anthropic/claude-sonnet-4-5`), or a mapping, usually
//! an anchor from `shared_config` (`model: *general_model`):
//!
//! ```yaml
//! model:
//!   model: openai/gpt-4o
//!   api_base: ${LLM_SERVICE_ENDPOINT}
//!   api_key: ${LLM_SERVICE_API_KEY}
//!   temperature: 0.1
//!   max_tokens: 4096
//!   parallel_tool_calls: true
//!   extra_headers: {X-Team: billing}
//!   timeout: 60
//! ```
//!
//! [`ModelConfig::resolve`] turns that into the wire API to speak (OpenAI
//! Chat Completions or Anthropic Messages), the model name the API expects
//! and its base URL. The API key comes from `api_key` (normally `${VAR}`)
//! or the provider's conventional variable (`OPENAI_API_KEY`,
//! `ANTHROPIC_API_KEY`, `AZURE_API_KEY`); it is a [`SecretString`], so a config
//! printed with `{:?}` shows no key.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret as _, SecretString};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use url::Url;

/// `model:` as written: a LiteLLM model string plus optional settings.
#[derive(Clone, Default)]
pub struct ModelConfig {
    /// `provider/model` (LiteLLM naming) or a bare model name.
    pub model: String,
    pub api_base: Option<String>,
    pub api_key: Option<SecretString>,
    /// Azure OpenAI's `api-version` query parameter.
    pub api_version: Option<String>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u32>,
    pub parallel_tool_calls: Option<bool>,
    /// Sent with every model request (proxies that route by header).
    pub extra_headers: BTreeMap<String, SecretString>,
    /// Seconds one model request may take, first byte to last.
    pub timeout: Option<f64>,
    /// Retries of a request refused with 429 or 5xx, or not connected.
    pub max_retries: Option<u32>,
}

impl fmt::Debug for ModelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelConfig")
            .field("model", &self.model)
            .field("api_base", &self.api_base)
            .field("api_key", &self.api_key.as_ref().map(|_| "[redacted]"))
            .field("temperature", &self.temperature)
            .field("max_tokens", &self.max_tokens)
            .field("parallel_tool_calls", &self.parallel_tool_calls)
            .field(
                "extra_headers",
                &self.extra_headers.keys().collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The mapping form; LiteLLM keys amesh does not act on are accepted so a
/// SAM `shared_config` loads unchanged, and listed by
/// [`ModelConfig::ignored_keys`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFields {
    model: String,
    #[serde(default)]
    api_base: Option<String>,
    #[serde(default)]
    api_key: Option<SecretString>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    extra_headers: BTreeMap<String, SecretString>,
    #[serde(default)]
    timeout: Option<f64>,
    #[serde(default, alias = "num_retries")]
    max_retries: Option<u32>,
    // LiteLLM / SAM keys accepted without effect.
    #[serde(default, rename = "cache_strategy")]
    _cache_strategy: Option<de::IgnoredAny>,
    #[serde(default, rename = "drop_params")]
    _drop_params: Option<de::IgnoredAny>,
    #[serde(default, rename = "reasoning_effort")]
    _reasoning_effort: Option<de::IgnoredAny>,
    // SAM keys amesh does not implement: accepted here (this struct is
    // typed through a visitor, out of reach of the loader's unknown-key
    // handling) and warned about by the loader (`sam.rs`).
    #[serde(default, rename = "llm_service_title_model_name")]
    _title_model: Option<de::IgnoredAny>,
    #[serde(default, rename = "oauth_token_url")]
    _oauth_token_url: Option<de::IgnoredAny>,
    #[serde(default, rename = "oauth_client_id")]
    _oauth_client_id: Option<de::IgnoredAny>,
    #[serde(default, rename = "oauth_client_secret")]
    _oauth_client_secret: Option<de::IgnoredAny>,
    #[serde(default, rename = "oauth_scope")]
    _oauth_scope: Option<de::IgnoredAny>,
    #[serde(default, rename = "oauth_ca_cert")]
    _oauth_ca_cert: Option<de::IgnoredAny>,
    #[serde(default, rename = "oauth_token_refresh_buffer_seconds")]
    _oauth_refresh_buffer: Option<de::IgnoredAny>,
}

impl<'de> Deserialize<'de> for ModelConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ModelConfig;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a model name like openai/gpt-4o, or a mapping with `model`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ModelConfig, E> {
                Ok(ModelConfig {
                    model: v.to_owned(),
                    ..ModelConfig::default()
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ModelConfig, A::Error> {
                let f = ModelFields::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ModelConfig {
                    model: f.model,
                    api_base: f.api_base,
                    api_key: f.api_key,
                    api_version: f.api_version,
                    temperature: f.temperature,
                    top_p: f.top_p,
                    max_tokens: f.max_tokens,
                    parallel_tool_calls: f.parallel_tool_calls,
                    extra_headers: f.extra_headers,
                    timeout: f.timeout,
                    max_retries: f.max_retries,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Which wire protocol a model speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelApi {
    /// OpenAI Chat Completions: OpenAI, vLLM, Ollama, LiteLLM proxy, ...
    OpenAiChat,
    /// Azure OpenAI: Chat Completions under `deployments/{model}` with an
    /// `api-version` and an `api-key` header.
    AzureOpenAi,
    /// Anthropic Messages.
    Anthropic,
}

/// A model ready to call: protocol, name as the API wants it, base URL.
#[derive(Debug, Clone)]
pub struct ResolvedModel {
    pub api: ModelApi,
    /// The model name without LiteLLM's provider prefix.
    pub name: String,
    pub base_url: Url,
    pub api_version: Option<String>,
    /// Environment variable consulted when `api_key` is not set.
    pub key_env: Option<&'static str>,
}

/// Default request timeout of a model call.
pub const DEFAULT_MODEL_TIMEOUT: Duration = Duration::from_secs(120);
/// Default retries of a refused (429, 5xx) or unconnected model request.
pub const DEFAULT_MODEL_RETRIES: u32 = 2;

/// LiteLLM providers that speak OpenAI Chat Completions at a known URL.
const OPENAI_COMPATIBLE: &[(&str, &str, Option<&str>)] = &[
    (
        "openai",
        "https://api.openai.com/v1",
        Some("OPENAI_API_KEY"),
    ),
    ("ollama", "http://localhost:11434/v1", None),
    ("ollama_chat", "http://localhost:11434/v1", None),
    (
        "openrouter",
        "https://openrouter.ai/api/v1",
        Some("OPENROUTER_API_KEY"),
    ),
    (
        "groq",
        "https://api.groq.com/openai/v1",
        Some("GROQ_API_KEY"),
    ),
    (
        "deepseek",
        "https://api.deepseek.com/v1",
        Some("DEEPSEEK_API_KEY"),
    ),
    (
        "mistral",
        "https://api.mistral.ai/v1",
        Some("MISTRAL_API_KEY"),
    ),
    ("xai", "https://api.x.ai/v1", Some("XAI_API_KEY")),
    (
        "together_ai",
        "https://api.together.xyz/v1",
        Some("TOGETHERAI_API_KEY"),
    ),
    (
        "fireworks_ai",
        "https://api.fireworks.ai/inference/v1",
        Some("FIREWORKS_API_KEY"),
    ),
];

/// LiteLLM providers that speak OpenAI Chat Completions only where
/// `api_base` says.
const OPENAI_COMPATIBLE_AT_BASE: &[&str] = &[
    "hosted_vllm",
    "vllm",
    "litellm_proxy",
    "openai_like",
    "lm_studio",
];

/// Why a `model:` block cannot be used. The messages are for the operator
/// (`amesh config check` shows them at the block's key).
#[derive(Debug, thiserror::Error)]
pub enum ModelConfigError {
    #[error("model name is empty (set it, e.g. openai/gpt-4o)")]
    EmptyName,
    #[error("model {model}: provider `{provider}` needs api_base (the server's URL)")]
    NoApiBase { model: String, provider: String },
    #[error("model {model}: api_base {raw:?} is not a URL: {source}")]
    BadApiBase {
        model: String,
        raw: String,
        source: url::ParseError,
    },
    #[error("model {model}: api_base {raw:?} must be an http(s) URL")]
    NotHttp { model: String, raw: String },
    #[error(
        "model {model}: provider `{provider}` is not supported by amesh; it speaks the OpenAI \
         Chat Completions API (openai/, azure/, ollama/, hosted_vllm/, litellm_proxy/, ...) \
         and the Anthropic Messages API (anthropic/). Put a LiteLLM proxy in front of \
         other providers and use litellm_proxy/{name} with its api_base"
    )]
    Unsupported {
        model: String,
        provider: String,
        name: String,
    },
    #[error("temperature {0} is outside 0..=2")]
    Temperature(f64),
    #[error("timeout {0} must be between 0 and 3600 seconds")]
    Timeout(f64),
}

impl ModelConfig {
    /// The protocol, model name and base URL, from the LiteLLM prefix (or
    /// `model_provider` when the name has none).
    pub fn resolve(&self, model_provider: Option<&str>) -> Result<ResolvedModel, ModelConfigError> {
        let written = self.model.trim();
        if written.is_empty() {
            return Err(ModelConfigError::EmptyName);
        }
        let (provider, name) = match written.split_once('/') {
            Some((p, n)) if is_provider(p) => (Some(p.to_ascii_lowercase()), n.to_owned()),
            _ => (
                model_provider.map(|p| p.trim().to_ascii_lowercase()),
                written.to_owned(),
            ),
        };
        let provider = provider.unwrap_or_else(|| {
            if name.starts_with("claude") && self.api_base.is_none() {
                "anthropic".into()
            } else {
                "openai".into()
            }
        });
        let base = |default: Option<&str>| -> Result<Url, ModelConfigError> {
            let raw = match (&self.api_base, default) {
                (Some(b), _) if !b.trim().is_empty() => b.trim().to_owned(),
                (_, Some(d)) => d.to_owned(),
                _ => {
                    return Err(ModelConfigError::NoApiBase {
                        model: written.to_owned(),
                        provider: provider.clone(),
                    });
                }
            };
            let url = match Url::parse(&raw) {
                Ok(url) => url,
                Err(source) => {
                    return Err(ModelConfigError::BadApiBase {
                        model: written.to_owned(),
                        raw,
                        source,
                    });
                }
            };
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ModelConfigError::NotHttp {
                    model: written.to_owned(),
                    raw,
                });
            }
            Ok(url)
        };
        let (api, base_url, key_env) = match provider.as_str() {
            "anthropic" => (
                ModelApi::Anthropic,
                base(Some("https://api.anthropic.com"))?,
                Some("ANTHROPIC_API_KEY"),
            ),
            "azure" => (ModelApi::AzureOpenAi, base(None)?, Some("AZURE_API_KEY")),
            p => {
                if let Some((_, default, env)) = OPENAI_COMPATIBLE.iter().find(|(n, ..)| *n == p) {
                    let mut url = base(Some(default))?;
                    // LiteLLM's Ollama base has no /v1; its OpenAI API does.
                    if p.starts_with("ollama") && matches!(url.path(), "" | "/") {
                        url.set_path("/v1");
                    }
                    (ModelApi::OpenAiChat, url, *env)
                } else if OPENAI_COMPATIBLE_AT_BASE.contains(&p) {
                    (ModelApi::OpenAiChat, base(None)?, None)
                } else {
                    return Err(ModelConfigError::Unsupported {
                        model: written.to_owned(),
                        provider: p.to_owned(),
                        name,
                    });
                }
            }
        };
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(ModelConfigError::Temperature(t));
        }
        if let Some(t) = self.timeout
            && !(t > 0.0 && t <= 3600.0)
        {
            return Err(ModelConfigError::Timeout(t));
        }
        Ok(ResolvedModel {
            api,
            name,
            base_url,
            api_version: self.api_version.clone(),
            key_env,
        })
    }

    /// How long one model request may take.
    pub fn request_timeout(&self) -> Duration {
        self.timeout
            .filter(|t| *t > 0.0 && *t <= 3600.0)
            .map(Duration::from_secs_f64)
            .unwrap_or(DEFAULT_MODEL_TIMEOUT)
    }

    /// The API key: `api_key`, else the provider's conventional variable.
    pub fn api_key(&self, resolved: &ResolvedModel) -> Option<SecretString> {
        match &self.api_key {
            Some(k) if !k.expose_secret().trim().is_empty() => Some(k.clone()),
            _ => resolved
                .key_env
                .and_then(|var| std::env::var(var).ok())
                .filter(|v| !v.trim().is_empty())
                .map(SecretString::from),
        }
    }
}

/// Whether `prefix` is a LiteLLM provider name (as opposed to the first
/// part of a model id such as `meta-llama/Llama-3-8B` on vLLM).
pub(super) fn is_provider(prefix: &str) -> bool {
    let p = prefix.to_ascii_lowercase();
    p == "anthropic"
        || p == "azure"
        || OPENAI_COMPATIBLE.iter().any(|(n, ..)| *n == p)
        || OPENAI_COMPATIBLE_AT_BASE.contains(&p.as_str())
        || matches!(
            p.as_str(),
            "gemini" | "vertex_ai" | "bedrock" | "cohere" | "huggingface" | "sagemaker"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(m: &str, base: Option<&str>) -> ModelConfig {
        ModelConfig {
            model: m.into(),
            api_base: base.map(str::to_owned),
            ..ModelConfig::default()
        }
    }

    #[test]
    fn litellm_prefixes_pick_the_protocol_and_strip_the_provider() {
        let r = model("openai/gpt-4o", None).resolve(None).unwrap();
        assert_eq!(r.api, ModelApi::OpenAiChat);
        assert_eq!(r.name, "gpt-4o");
        assert_eq!(r.base_url.as_str(), "https://api.openai.com/v1");
        let r = model("anthropic/claude-sonnet-4-5", None)
            .resolve(None)
            .unwrap();
        assert_eq!(r.api, ModelApi::Anthropic);
        assert_eq!(r.name, "claude-sonnet-4-5");
        let r = model("ollama/llama3.2", Some("http://gpu:11434"))
            .resolve(None)
            .unwrap();
        assert_eq!(r.base_url.as_str(), "http://gpu:11434/v1");
        // A vLLM model id with a slash is not a provider prefix.
        let r = model("meta-llama/Llama-3-8B", Some("http://vllm:8000/v1"))
            .resolve(None)
            .unwrap();
        assert_eq!(r.name, "meta-llama/Llama-3-8B");
        assert_eq!(r.api, ModelApi::OpenAiChat);
        assert!(model("azure/gpt4o", None).resolve(None).is_err());
        assert!(
            model("gemini/gemini-2.5-pro", None)
                .resolve(None)
                .unwrap_err()
                .to_string()
                .contains("litellm_proxy")
        );
    }

    #[test]
    fn model_provider_applies_to_bare_names() {
        let r = model("claude-x", Some("http://127.0.0.1:1"))
            .resolve(Some("anthropic"))
            .unwrap();
        assert_eq!(r.api, ModelApi::Anthropic);
        let r = model("claude-x", None).resolve(None).unwrap();
        assert_eq!(r.api, ModelApi::Anthropic);
        let r = model("gpt-4o", Some("http://proxy:4000"))
            .resolve(None)
            .unwrap();
        assert_eq!(r.base_url.as_str(), "http://proxy:4000/");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let mut m = model("openai/gpt-4o", None);
        m.api_key = Some(SecretString::from("sk-very-secret"));
        m.extra_headers
            .insert("x-token".into(), SecretString::from("header-secret"));
        let shown = format!("{m:?}");
        assert!(!shown.contains("sk-very-secret") && !shown.contains("header-secret"));
    }
}
