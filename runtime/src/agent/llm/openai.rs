//! OpenAI Chat Completions (and everything that speaks it) through
//! `async-openai`.
//!
//! Requests and stream chunks are plain JSON (`create_stream_byot`): the
//! servers operators point amesh at (vLLM, Ollama, LiteLLM, Azure) differ
//! from OpenAI's schema in small ways — a missing `index`, an extra field
//! — that strict types would turn into failures. The crate still does what
//! it is good at: URLs and auth for OpenAI and Azure, SSE framing, and the
//! retry loop, which here is a bounded policy of ours ([`BoundedRetry`]).

use secrecy::ExposeSecret as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use async_openai::Client;
use async_openai::config::{AzureConfig, Config, OpenAIConfig};
use async_openai::error::OpenAIError;
use async_openai::middleware::{HttpRequestFactory, ReqwestService, retry::should_retry};
use async_openai::traits::RequestOptionsBuilder as _;
use futures::StreamExt;
use serde_json::{Map, Value, json};

use super::{
    ChatMessage, ModelError, ModelReply, ModelRequest, Sampling, ToolCallRequest, host_of,
    retry_after, retry_delay, short,
};
use crate::config::{ModelApi, ResolvedModel};

/// One OpenAI-compatible model. Cloning is shallow.
#[derive(Clone)]
pub(crate) struct OpenAiModel {
    client: Client<Arc<dyn Config>>,
    name: String,
    host: String,
    /// The API base, for the model span's `server.address` and `server.port`.
    url: url::Url,
    /// Azure OpenAI rather than OpenAI's own API or a compatible server
    /// (the span's `gen_ai.provider.name`).
    azure: bool,
    sampling: Sampling,
}

impl OpenAiModel {
    pub(super) fn new(
        http: reqwest::Client,
        resolved: &ResolvedModel,
        key: Option<secrecy::SecretString>,
        sampling: Sampling,
    ) -> OpenAiModel {
        let key = key
            .map(|k| k.expose_secret().to_owned())
            .unwrap_or_default();
        let base = resolved.base_url.as_str().trim_end_matches('/').to_owned();
        let config: Arc<dyn Config> = match resolved.api {
            ModelApi::AzureOpenAi => Arc::new(
                AzureConfig::new()
                    .with_api_base(base)
                    .with_deployment_id(resolved.name.clone())
                    .with_api_version(
                        resolved
                            .api_version
                            .clone()
                            .unwrap_or_else(|| "2024-10-21".into()),
                    )
                    .with_api_key(key),
            ),
            _ => Arc::new(OpenAIConfig::new().with_api_base(base).with_api_key(key)),
        };
        let service = tower::ServiceBuilder::new()
            .retry(BoundedRetry {
                left: sampling.retries,
                attempt: 0,
            })
            .service(ReqwestService::new(http.clone()));
        let client = Client::build(http, config).with_http_service(service);
        OpenAiModel {
            client,
            name: resolved.name.clone(),
            host: host_of(&resolved.base_url),
            url: resolved.base_url.clone(),
            azure: resolved.api == ModelApi::AzureOpenAi,
            sampling,
        }
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// The OpenTelemetry `gen_ai.provider.name`: `azure.ai.openai` for
    /// Azure OpenAI, else `openai` (compatible servers speak its API).
    pub(super) fn provider(&self) -> &'static str {
        if self.azure {
            "azure.ai.openai"
        } else {
            "openai"
        }
    }

    pub(super) fn url(&self) -> &url::Url {
        &self.url
    }

    pub(super) fn sampling(&self) -> &Sampling {
        &self.sampling
    }

    pub(super) async fn complete(
        &self,
        request: &ModelRequest<'_>,
        on_text: &mut (dyn FnMut(&str) + Send),
    ) -> Result<ModelReply, ModelError> {
        let body = self.body(request);
        let mut stream = self
            .client
            .chat()
            .headers(crate::telemetry::propagation::http_headers())
            .create_stream_byot::<Value, Value>(body)
            .await
            .map_err(|e| self.error(e))?;
        let mut reply = ModelReply::default();
        let mut calls = ToolCallAssembler::default();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.error(e))?;
            if let Some(error) = chunk.get("error") {
                // Some proxies report a mid-stream failure as a data event.
                let message = error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown error");
                return Err(ModelError::Refused {
                    status: 200,
                    message: short(message),
                });
            }
            let Some(choice) = chunk
                .get("choices")
                .and_then(Value::as_array)
                .and_then(|c| c.first())
            else {
                continue; // usage-only chunk
            };
            let delta = choice.get("delta").or_else(|| choice.get("message"));
            let Some(delta) = delta else { continue };
            if let Some(text) = delta.get("content").and_then(Value::as_str)
                && !text.is_empty()
            {
                on_text(text);
                reply.text.push_str(text);
            }
            if let Some(parts) = delta.get("tool_calls").and_then(Value::as_array) {
                for (position, part) in parts.iter().enumerate() {
                    calls.add(position, part);
                }
            }
        }
        reply.tool_calls = calls.finish();
        Ok(reply)
    }

    fn body(&self, request: &ModelRequest<'_>) -> Value {
        let mut messages = Vec::with_capacity(request.messages.len() + 1);
        if let Some(system) = request.system.filter(|s| !s.is_empty()) {
            messages.push(json!({"role": "system", "content": system}));
        }
        for m in request.messages {
            messages.push(match m {
                ChatMessage::User { text } => json!({"role": "user", "content": text}),
                ChatMessage::Assistant { text, tool_calls } => {
                    let mut out = json!({"role": "assistant",
                        "content": if text.is_empty() { Value::Null } else { Value::String(text.clone()) }});
                    if !tool_calls.is_empty() {
                        out["tool_calls"] = tool_calls
                            .iter()
                            .map(|c| {
                                json!({"id": c.id, "type": "function",
                                       "function": {"name": c.name, "arguments": c.arguments}})
                            })
                            .collect();
                    }
                    out
                }
                ChatMessage::Tool {
                    call_id, content, ..
                } => json!({"role": "tool", "tool_call_id": call_id, "content": content}),
            });
        }
        let mut body = Map::new();
        body.insert("model".into(), json!(self.name));
        body.insert("messages".into(), Value::Array(messages));
        body.insert("stream".into(), json!(true));
        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.parameters}})
                })
                .collect();
            body.insert("tools".into(), Value::Array(tools));
            if let Some(p) = self.sampling.parallel_tool_calls {
                body.insert("parallel_tool_calls".into(), json!(p));
            }
        }
        if let Some(t) = self.sampling.temperature {
            body.insert("temperature".into(), json!(t));
        }
        if let Some(p) = self.sampling.top_p {
            body.insert("top_p".into(), json!(p));
        }
        if let Some(m) = self.sampling.max_tokens {
            body.insert("max_tokens".into(), json!(m));
        }
        Value::Object(body)
    }

    fn error(&self, e: OpenAIError) -> ModelError {
        let retries = self.sampling.retries;
        match e {
            OpenAIError::ApiError(r) => {
                let status = r.status_code.as_u16();
                match status {
                    429 => ModelError::RateLimited { retries },
                    500..=599 => ModelError::Server { status, retries },
                    _ => ModelError::Refused {
                        status,
                        message: short(&r.api_error.message),
                    },
                }
            }
            OpenAIError::Reqwest(e) if e.is_timeout() => ModelError::Timeout(self.sampling.timeout),
            OpenAIError::Reqwest(e) => ModelError::Unreachable {
                host: self.host.clone(),
                reason: reqwest_reason(&e),
            },
            OpenAIError::JSONDeserialize(e, _) => ModelError::Protocol(e.to_string()),
            OpenAIError::StreamError(e) => ModelError::Protocol(short(&e.to_string())),
            other => ModelError::Protocol(short(&other.to_string())),
        }
    }
}

/// The cause of a transport failure, in words. reqwest's own Display
/// names the URL, which for Azure can carry a key in the query.
pub(super) fn reqwest_reason(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "connection refused or unreachable".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else if e.is_body() || e.is_decode() {
        "the connection broke off mid-answer".into()
    } else {
        "the request failed".into()
    }
}

/// Collects streamed tool-call fragments by their `index` (or, for
/// servers that send whole calls without one, their position).
#[derive(Default)]
struct ToolCallAssembler {
    calls: Vec<(u64, ToolCallRequest)>,
}

impl ToolCallAssembler {
    fn add(&mut self, position: usize, part: &Value) {
        let index = part
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(position as u64);
        let slot = match self.calls.iter().position(|(i, _)| *i == index) {
            Some(s) => s,
            None => {
                self.calls.push((
                    index,
                    ToolCallRequest {
                        id: String::new(),
                        name: String::new(),
                        arguments: String::new(),
                    },
                ));
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[slot].1;
        if let Some(id) = part.get("id").and_then(Value::as_str) {
            call.id = id.to_owned();
        }
        if let Some(f) = part.get("function") {
            if let Some(name) = f.get("name").and_then(Value::as_str) {
                call.name.push_str(name);
            }
            match f.get("arguments") {
                Some(Value::String(a)) => call.arguments.push_str(a),
                // Some servers send arguments as an object.
                Some(v @ Value::Object(_)) => call.arguments = v.to_string(),
                _ => {}
            }
        }
    }

    fn finish(mut self) -> Vec<ToolCallRequest> {
        self.calls.sort_by_key(|(i, _)| *i);
        self.calls
            .into_iter()
            .enumerate()
            .map(|(n, (_, mut c))| {
                if c.id.is_empty() {
                    c.id = format!("call_{n}");
                }
                if c.arguments.trim().is_empty() {
                    c.arguments = "{}".into();
                }
                c
            })
            .collect()
    }
}

/// Retries 429, 5xx and connection failures a bounded number of times,
/// honouring `Retry-After` up to [`super::MAX_RETRY_WAIT`].
#[derive(Clone)]
struct BoundedRetry {
    left: u32,
    attempt: u32,
}

impl tower::retry::Policy<HttpRequestFactory, reqwest::Response, OpenAIError> for BoundedRetry {
    type Future = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

    fn retry(
        &mut self,
        _req: &mut HttpRequestFactory,
        result: &mut Result<reqwest::Response, OpenAIError>,
    ) -> Option<Self::Future> {
        if self.left == 0 || !should_retry(result) {
            return None;
        }
        let after = result.as_ref().ok().and_then(|r| retry_after(r.headers()));
        let delay = retry_delay(self.attempt, after);
        tracing::info!(
            attempt = self.attempt + 1,
            delay_ms = delay.as_millis() as u64,
            "model request refused or failed; retrying"
        );
        self.left -= 1;
        self.attempt += 1;
        Some(Box::pin(tokio::time::sleep(delay)))
    }

    fn clone_request(&mut self, req: &HttpRequestFactory) -> Option<HttpRequestFactory> {
        Some(req.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Azure OpenAI: deployments path, `api-version` query, `api-key`
    /// header — against a real HTTP server.
    #[tokio::test]
    async fn azure_requests_go_to_the_deployment_with_its_key() {
        use axum::extract::{Path, Query, State};
        use axum::http::HeaderMap;
        type Seen = std::sync::Arc<std::sync::Mutex<Vec<String>>>;
        async fn answer(
            State(seen): State<Seen>,
            Path(deployment): Path<String>,
            Query(q): Query<std::collections::HashMap<String, String>>,
            headers: HeaderMap,
        ) -> impl axum::response::IntoResponse {
            let key = headers
                .get("api-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            seen.lock().unwrap().push(format!(
                "{deployment} {} {key}",
                q.get("api-version").map_or("", String::as_str)
            ));
            let chunk = json!({"choices": [{"index": 0, "delta": {"content": "hi from azure"}}]});
            (
                [("content-type", "text/event-stream")],
                format!("data: {chunk}\n\ndata: [DONE]\n\n"),
            )
        }
        let seen: Seen = Default::default();
        let app = axum::Router::new()
            .route(
                "/openai/deployments/{d}/chat/completions",
                axum::routing::post(answer),
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let cfg = crate::config::ModelConfig {
            model: "azure/gpt4o-prod".into(),
            api_base: Some(format!("http://{addr}")),
            api_key: Some(secrecy::SecretString::from("azure-key")),
            api_version: Some("2024-10-21".into()),
            ..Default::default()
        };
        let model = super::super::Model::new(&cfg, None).unwrap();
        let request = ModelRequest {
            system: None,
            messages: &[ChatMessage::User { text: "hi".into() }],
            tools: &[],
        };
        let reply = model.complete(&request, &mut |_| {}).await.unwrap();
        assert_eq!(reply.text, "hi from azure");
        assert_eq!(
            seen.lock().unwrap().as_slice(),
            ["gpt4o-prod 2024-10-21 azure-key"]
        );
        // Traces name the provider as the semantic conventions do.
        let super::super::Model::OpenAi(m) = &model else {
            panic!("Azure speaks the Chat Completions API")
        };
        assert_eq!(m.provider(), "azure.ai.openai");
    }

    #[test]
    fn fragments_assemble_by_index_and_whole_calls_by_position() {
        let mut a = ToolCallAssembler::default();
        a.add(
            0,
            &json!({"index": 1, "id": "b", "function": {"name": "two", "arguments": "{\"x\""}}),
        );
        a.add(
            0,
            &json!({"index": 0, "id": "a", "function": {"name": "one", "arguments": ""}}),
        );
        a.add(0, &json!({"index": 1, "function": {"arguments": ":1}"}}));
        let calls = a.finish();
        assert_eq!(calls[0].name, "one");
        assert_eq!(calls[0].arguments, "{}");
        assert_eq!(calls[1].arguments, "{\"x\":1}");
        let mut b = ToolCallAssembler::default();
        b.add(
            0,
            &json!({"function": {"name": "p", "arguments": {"k": 1}}}),
        );
        b.add(1, &json!({"function": {"name": "q"}}));
        let calls = b.finish();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].id, "call_0");
        assert_eq!(calls[0].arguments, "{\"k\":1}");
    }
}
