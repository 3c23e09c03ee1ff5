//! What both transports share about one (server, user) pair: the pooled
//! HTTP client, the URL, the user's bearer token and the static headers.

use bytes::Bytes;
use futures::Stream;
use reqwest::RequestBuilder;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use url::Url;

use super::body::{BodyError, read_bounded};
use super::error::McpError;
use crate::secret::{ExposeSecret as _, SecretString};
use crate::tool_config::McpToolConfig;

/// Largest answer (JSON body or one event stream answer) read into memory.
/// Tool results can be big (documents, search hits) but not unbounded.
pub(crate) const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// One server as seen by one user's session.
#[derive(Debug)]
pub(crate) struct Endpoint {
    pub tool_id: String,
    pub http: reqwest::Client,
    pub url: Url,
    pub token: Option<SecretString>,
    /// `connection_params.headers`, checked once here.
    pub headers: HeaderMap,
}

impl Endpoint {
    pub fn new(
        cfg: &McpToolConfig,
        http: reqwest::Client,
        access_token: Option<&SecretString>,
    ) -> Result<Self, McpError> {
        let tool_id = cfg.tool_id();
        let config_error = |message: String| McpError::Config {
            tool_id: tool_id.clone(),
            message,
        };
        let url = Url::parse(cfg.connection_params.url.trim())
            .map_err(|e| config_error(format!("connection_params.url: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(config_error(format!(
                "connection_params.url: expected http(s), found `{}`",
                url.scheme()
            )));
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &cfg.connection_params.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| config_error(format!("header name `{name}` is not valid")))?;
            let mut value = HeaderValue::from_str(value.expose_secret())
                .map_err(|_| config_error(format!("header `{name}` has an invalid value")))?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        Ok(Self {
            tool_id,
            http,
            url,
            token: access_token.cloned(),
            headers,
        })
    }

    /// Adds the current call's headers (see [`super::call_headers`]), the
    /// static headers and the user's bearer token, in that order.
    pub fn authorize(&self, mut rb: RequestBuilder) -> Result<RequestBuilder, McpError> {
        rb = super::call_headers::apply(rb);
        rb = rb.headers(self.headers.clone());
        if let Some(token) = &self.token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose_secret()))
                .map_err(|_| McpError::Config {
                    tool_id: self.tool_id.clone(),
                    message: "access token contains characters not allowed in a header".into(),
                })?;
            value.set_sensitive(true);
            rb = rb.header(AUTHORIZATION, value);
        }
        Ok(rb)
    }

    pub fn transport_error(&self, err: reqwest::Error) -> McpError {
        McpError::transport(&self.tool_id, err)
    }

    pub fn protocol_error(&self, message: impl Into<String>) -> McpError {
        McpError::protocol(&self.tool_id, message)
    }

    /// Reads a whole body, refusing one over [`MAX_BODY_BYTES`].
    pub async fn read_body(&self, response: reqwest::Response) -> Result<Bytes, McpError> {
        read_bounded(response, MAX_BODY_BYTES)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge { limit } => {
                    self.protocol_error(format!("answer larger than {limit} bytes"))
                }
                BodyError::Transport(e) => self.transport_error(e),
            })
    }
}

/// The media type of a response, lowercased, without parameters.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(reqwest::header::CONTENT_TYPE)?.to_str().ok()?;
    Some(
        value
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase(),
    )
}

/// A response body as a stream of chunks, boxed so both transports can
/// hold one in a struct or a task.
pub(crate) type ByteStream = std::pin::Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

pub(crate) fn byte_stream(response: reqwest::Response) -> ByteStream {
    Box::pin(response.bytes_stream())
}
