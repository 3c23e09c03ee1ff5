//! Language models behind one small interface: send a conversation and the
//! tools on offer, stream the text back as it is generated, get the
//! model's tool calls at the end.
//!
//! Two wire protocols cover the providers operators use:
//! - OpenAI Chat Completions ([`openai`]): OpenAI, Azure OpenAI, vLLM,
//!   Ollama, a LiteLLM proxy, ... spoken through `async-openai` (its
//!   bring-your-own-types calls, so servers that deviate a little from
//!   OpenAI's schema still work);
//! - Anthropic Messages ([`anthropic`]): written on reqwest + an SSE
//!   parser, because no maintained Anthropic client crate uses the
//!   reqwest 0.13 the rest of amesh is built on.
//!
//! The conversation types here are provider-neutral and serializable: they
//! are what the reasoning loop persists while a task waits for a user.
//! An enum rather than a trait object: two known protocols, async methods
//! without boxing.

mod anthropic;
mod openai;

use secrecy::ExposeSecret as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracing::Instrument as _;

use crate::config::{ModelApi, ModelConfig};

/// One message of a conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub(crate) enum ChatMessage {
    User {
        text: String,
    },
    Assistant {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        text: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCallRequest>,
    },
    /// The result of one tool call, answered to the model.
    Tool {
        call_id: String,
        name: String,
        content: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
}

impl ChatMessage {
    /// Rough size in bytes, for bounding history.
    pub(crate) fn weight(&self) -> usize {
        match self {
            ChatMessage::User { text } => text.len(),
            ChatMessage::Assistant { text, tool_calls } => {
                text.len()
                    + tool_calls
                        .iter()
                        .map(|c| c.name.len() + c.arguments.len() + c.id.len())
                        .sum::<usize>()
            }
            ChatMessage::Tool { content, .. } => content.len(),
        }
    }
}

/// A tool call as the model wrote it. `arguments` is the raw JSON text:
/// it may be malformed, and the model is told so.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct ToolCallRequest {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// A tool the model may call.
#[derive(Clone, Debug)]
pub(crate) struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments (an object schema).
    pub parameters: Value,
}

/// One request to a model.
pub(crate) struct ModelRequest<'a> {
    pub system: Option<&'a str>,
    pub messages: &'a [ChatMessage],
    pub tools: &'a [ToolSpec],
}

/// The model's complete answer to one request.
#[derive(Debug, Default)]
pub(crate) struct ModelReply {
    pub text: String,
    pub tool_calls: Vec<ToolCallRequest>,
}

/// Why a model request failed. Each variant's text is for the person who
/// asked: it says what happened, not how the HTTP layer saw it, and never
/// carries a key.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ModelError {
    #[error("the model did not answer within {} s", .0.as_secs())]
    Timeout(Duration),
    #[error(
        "the model service is rate limiting requests (HTTP 429) and still was after {retries} retries; try again in a moment"
    )]
    RateLimited { retries: u32 },
    #[error("the model service failed (HTTP {status}) after {retries} retries; try again later")]
    Server { status: u16, retries: u32 },
    #[error("the model service at {host} cannot be reached: {reason}")]
    Unreachable { host: String, reason: String },
    #[error("the model service refused the request (HTTP {status}): {message}")]
    Refused { status: u16, message: String },
    #[error("the model service answered something amesh cannot read: {0}")]
    Protocol(String),
    #[error("the model is misconfigured: {0}")]
    Config(String),
}

impl ModelError {
    /// A short, fixed name of the variant (for a span's `error.type`).
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ModelError::Timeout(_) => "timeout",
            ModelError::RateLimited { .. } => "rate_limited",
            ModelError::Server { .. } => "server_error",
            ModelError::Unreachable { .. } => "unreachable",
            ModelError::Refused { .. } => "refused",
            ModelError::Protocol(_) => "protocol",
            ModelError::Config(_) => "config",
        }
    }
}

/// A configured model, ready for requests. Cloning is shallow.
#[derive(Clone)]
pub(crate) enum Model {
    OpenAi(openai::OpenAiModel),
    Anthropic(anthropic::AnthropicModel),
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Model::OpenAi(m) => f.debug_tuple("OpenAi").field(&m.name()).finish(),
            Model::Anthropic(m) => f.debug_tuple("Anthropic").field(&m.name()).finish(),
        }
    }
}

/// Settings shared by both protocols.
#[derive(Clone, Debug)]
pub(crate) struct Sampling {
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub max_tokens: Option<u32>,
    pub parallel_tool_calls: Option<bool>,
    pub timeout: Duration,
    pub retries: u32,
}

impl Model {
    /// Builds the client for `cfg`; fails on a configuration that cannot
    /// work (unknown provider, bad URL, a key that is not a header value).
    pub(crate) fn new(
        cfg: &ModelConfig,
        model_provider: Option<&str>,
    ) -> Result<Model, ModelError> {
        let resolved = cfg
            .resolve(model_provider)
            .map_err(|e| ModelError::Config(e.to_string()))?;
        let key = cfg.api_key(&resolved);
        let sampling = Sampling {
            temperature: cfg.temperature,
            top_p: cfg.top_p,
            max_tokens: cfg.max_tokens,
            parallel_tool_calls: cfg.parallel_tool_calls,
            timeout: cfg.request_timeout(),
            retries: cfg
                .max_retries
                .unwrap_or(crate::config::llm::DEFAULT_MODEL_RETRIES)
                .min(10),
        };
        let http = http_client(cfg, &key, resolved.api, sampling.timeout)?;
        Ok(match resolved.api {
            ModelApi::Anthropic => Model::Anthropic(anthropic::AnthropicModel::new(
                http, &resolved, key, sampling,
            )),
            ModelApi::OpenAiChat | ModelApi::AzureOpenAi => {
                Model::OpenAi(openai::OpenAiModel::new(http, &resolved, key, sampling))
            }
        })
    }

    /// Sends one request; `on_text` sees the answer's text as it streams.
    /// Never takes longer than the configured timeout (retries included).
    pub(crate) async fn complete(
        &self,
        request: &ModelRequest<'_>,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ModelReply, ModelError> {
        let timeout = self.sampling().timeout;
        let call = async {
            match self {
                Model::OpenAi(m) => m.complete(request, on_text).await,
                Model::Anthropic(m) => m.complete(request, on_text).await,
            }
        };
        let (provider, url) = match self {
            Model::OpenAi(m) => (m.provider(), m.url()),
            Model::Anthropic(m) => ("anthropic", m.url()),
        };
        let span = crate::telemetry::spans::model_call(
            provider,
            self.name(),
            url.host_str().unwrap_or_default(),
            url.port_or_known_default(),
        );
        let started = std::time::Instant::now();
        let reply = tokio::time::timeout(timeout, call)
            .instrument(span.clone())
            .await
            .unwrap_or(Err(ModelError::Timeout(timeout)));
        crate::telemetry::metrics::model_call(self.name(), reply.is_ok(), started.elapsed());
        if let Err(e) = &reply {
            crate::telemetry::spans::failed(&span, e.kind());
        }
        reply
    }

    fn sampling(&self) -> &Sampling {
        match self {
            Model::OpenAi(m) => m.sampling(),
            Model::Anthropic(m) => m.sampling(),
        }
    }

    /// The model's name as the API knows it (for logs and the agent card).
    pub(crate) fn name(&self) -> &str {
        match self {
            Model::OpenAi(m) => m.name(),
            Model::Anthropic(m) => m.name(),
        }
    }
}

/// The HTTP client of one model: bounded connect time, no redirects (a
/// redirect would carry the key elsewhere), `extra_headers` and the key
/// checked as header values here so no request can fail on them later.
fn http_client(
    cfg: &ModelConfig,
    key: &Option<secrecy::SecretString>,
    api: ModelApi,
    timeout: Duration,
) -> Result<reqwest::Client, ModelError> {
    use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
    let mut headers = HeaderMap::new();
    for (name, value) in &cfg.extra_headers {
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ModelError::Config(format!("extra_headers: {name:?} is not a header name"))
        })?;
        let mut value = HeaderValue::from_str(value.expose_secret()).map_err(|_| {
            ModelError::Config(format!(
                "extra_headers.{name}: the value is not a valid header value"
            ))
        })?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    if let Some(key) = key
        && HeaderValue::from_str(&format!("Bearer {}", key.expose_secret())).is_err()
    {
        return Err(ModelError::Config(
            "the API key contains characters that cannot be sent in a header (a newline?)".into(),
        ));
    }
    if key.is_none() && api == ModelApi::Anthropic {
        tracing::warn!("model has no API key: set api_key or ANTHROPIC_API_KEY");
    }
    reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .build()
        .map_err(|e| ModelError::Config(format!("cannot build the HTTP client: {e}")))
}

/// Longest wait amesh honours from a `Retry-After`: beyond it the request
/// fails and the user is told, rather than the task sitting silent.
pub(crate) const MAX_RETRY_WAIT: Duration = Duration::from_secs(20);

/// Wait before retry number `attempt` (0-based): the server's
/// `Retry-After` when it gave one (capped), else 250 ms doubling to 4 s.
pub(crate) fn retry_delay(attempt: u32, retry_after: Option<Duration>) -> Duration {
    retry_after
        .map(|d| d.min(MAX_RETRY_WAIT))
        .unwrap_or_else(|| {
            Duration::from_millis(250)
                .saturating_mul(2u32.saturating_pow(attempt))
                .min(Duration::from_secs(4))
        })
}

/// `Retry-After` in seconds (the HTTP-date form is rare on APIs and is
/// treated as absent).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// The host of a URL, for messages.
pub(crate) fn host_of(url: &url::Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_owned(),
        _ => url.as_str().to_owned(),
    }
}

/// A model's error text shortened for a user (bodies can be long).
pub(crate) fn short(text: &str) -> String {
    const MAX: usize = 300;
    let text = text.trim();
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_waits_are_bounded() {
        assert_eq!(retry_delay(0, None), Duration::from_millis(250));
        assert_eq!(retry_delay(10, None), Duration::from_secs(4));
        assert_eq!(
            retry_delay(0, Some(Duration::from_secs(3600))),
            MAX_RETRY_WAIT
        );
        assert_eq!(
            retry_delay(0, Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn messages_round_trip_through_json() {
        let m = vec![
            ChatMessage::User { text: "hi".into() },
            ChatMessage::Assistant {
                text: String::new(),
                tool_calls: vec![ToolCallRequest {
                    id: "c1".into(),
                    name: "t".into(),
                    arguments: "{}".into(),
                }],
            },
            ChatMessage::Tool {
                call_id: "c1".into(),
                name: "t".into(),
                content: "ok".into(),
                is_error: false,
            },
        ];
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json[0]["role"], "user");
        let back: Vec<ChatMessage> = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
    }
}
