//! HTTP plumbing: the recommended client, JSON fetches for discovery, and
//! the adapter that lets the `oauth2` crate run on our reqwest 0.13.
//!
//! `oauth2` 5 ships an adapter for reqwest 0.12 only; enabling it would put a
//! second reqwest (and hyper stack) in the build. Its [`AsyncHttpClient`]
//! trait is small, so [`ReqwestAdapter`] implements it over the workspace
//! reqwest instead.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use oauth2::{AsyncHttpClient, HttpRequest, HttpResponse};
use serde::de::DeserializeOwned;
use url::Url;

use super::error::{OAuthError, snippet};

/// The longest body kept in an error message.
const SNIPPET: usize = 200;

/// A reqwest client fit for OAuth: no redirects (a token or metadata
/// endpoint that redirects is a misconfiguration or an SSRF attempt, and
/// following it could send a code or a secret elsewhere), bounded timeouts.
/// Fails only if the TLS backend cannot initialise.
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("amesh/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// The outcome of a GET for a metadata document.
pub(crate) enum Fetched<T> {
    /// 200 with a document of the expected shape.
    Found(T),
    /// Not there (any non-2xx); the string says what was answered.
    Missing(String),
}

/// GETs `url` and parses the JSON body. A non-2xx answer is `Missing`, so
/// the caller can try the next well-known location; a transport error or a
/// 2xx with a malformed body is an error, because the next location will
/// not fix it.
pub(crate) async fn get_json<T: DeserializeOwned>(
    http: &reqwest::Client,
    url: &Url,
    document: &'static str,
) -> Result<Fetched<T>, OAuthError> {
    let response = http
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .header("MCP-Protocol-Version", "2025-06-18")
        .send()
        .await
        .map_err(|source| OAuthError::Http {
            url: url.to_string(),
            source,
        })?;
    let status = response.status();
    if !status.is_success() {
        return Ok(Fetched::Missing(format!("HTTP {}", status.as_u16())));
    }
    let body = response.bytes().await.map_err(|source| OAuthError::Http {
        url: url.to_string(),
        source,
    })?;
    serde_json::from_slice(&body)
        .map(Fetched::Found)
        .map_err(|e| OAuthError::InvalidDocument {
            url: url.to_string(),
            document,
            reason: e.to_string(),
        })
}

/// POSTs a JSON body and returns (status, body) for the caller to judge.
pub(crate) async fn post_json(
    http: &reqwest::Client,
    url: &Url,
    body: &serde_json::Value,
) -> Result<(u16, Vec<u8>), OAuthError> {
    let response = http
        .post(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .json(body)
        .send()
        .await
        .map_err(|source| OAuthError::Http {
            url: url.to_string(),
            source,
        })?;
    let status = response.status().as_u16();
    let bytes = response.bytes().await.map_err(|source| OAuthError::Http {
        url: url.to_string(),
        source,
    })?;
    Ok((status, bytes.to_vec()))
}

/// Why the adapter could not produce a response `oauth2` can read.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The request `oauth2` built could not be turned into a reqwest request.
    #[error("could not build the request: {0}")]
    Build(String),
    /// No HTTP answer.
    #[error("{0}")]
    Transport(#[from] reqwest::Error),
    /// A non-2xx answer that is not an RFC 6749 JSON error (e.g. a 500 page).
    #[error("HTTP {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        body: String,
    },
}

/// Runs `oauth2` requests on a borrowed reqwest 0.13 client.
pub struct ReqwestAdapter<'a>(pub &'a reqwest::Client);

impl<'c> AsyncHttpClient<'c> for ReqwestAdapter<'_> {
    type Error = AdapterError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, AdapterError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)
                .map_err(|e| AdapterError::Build(e.to_string()))?;
            let response = self.0.execute(request).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?.to_vec();
            let is_json = headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/json"));
            // oauth2 would report an unparseable error body as a parse
            // failure and lose the status; keep it.
            if !status.is_success() && !is_json {
                return Err(AdapterError::Status {
                    status: status.as_u16(),
                    body: snippet(&body, SNIPPET),
                });
            }
            let mut builder = http::Response::builder().status(status);
            if let Some(h) = builder.headers_mut() {
                *h = headers;
            }
            builder
                .body(body)
                .map_err(|e| AdapterError::Build(e.to_string()))
        })
    }
}

pub(crate) fn error_snippet(body: &[u8]) -> String {
    snippet(body, SNIPPET)
}
