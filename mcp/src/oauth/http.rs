//! HTTP plumbing of the OAuth client: [`OAuthHttp`], the client for one MCP
//! server's OAuth requests; the JSON fetches of discovery and registration;
//! and the adapter that lets the `oauth2` crate run on our reqwest 0.13.
//!
//! Every OAuth request goes through this module, so three things hold for
//! all of them: the target passes the MCP server's [`TargetPolicy`] (IP
//! literals before the request is sent, names in the client's resolver);
//! the answer is read by the crate's one bounded reader, at most
//! [`MAX_OAUTH_BODY`] bytes; and the request ends, body included, within
//! the client's timeout.
//!
//! `oauth2` 5 ships an adapter for reqwest 0.12 only; enabling it would put a
//! second reqwest (and hyper stack) in the build. Its [`AsyncHttpClient`]
//! trait is small, so [`ReqwestAdapter`] implements it over the workspace
//! reqwest instead.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use oauth2::{AsyncHttpClient, HttpRequest, HttpResponse};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::de::DeserializeOwned;
use url::{Host, Url};

use super::error::{OAuthError, excerpt};
use super::target::{AllowedHost, TargetPolicy, TargetRefused, resolve};
use crate::client::body::{BodyError, read_bounded};

/// The largest OAuth answer read. Metadata documents and registration and
/// token answers are a few KiB; 1 MiB leaves room for verbose providers and
/// bounds what a hostile one costs.
pub const MAX_OAUTH_BODY: usize = 1024 * 1024;

/// Time allowed to open a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Time allowed for a whole request, from connecting to the answer's last
/// byte: a server that trickles its body is cut off here.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP client for the OAuth requests made for one MCP server:
/// discovery, registration, code exchange and refresh.
///
/// It refuses targets more internal than the MCP server (see
/// [`super::permits`]), so build one per MCP server, with the hosts the
/// operator allow-listed for it. It follows no redirects (a token or
/// metadata endpoint that redirects is a misconfiguration or an SSRF
/// attempt, and following it could send a code or a secret elsewhere) and
/// uses no proxy (the guard checks the address the connection goes to; a
/// proxy would resolve the target itself, out of its sight). Cloning is
/// shallow.
///
/// It dereferences to its `reqwest::Client` for other requests to the same
/// servers (a probe, a test); those are guarded by the resolver too, but
/// only this module's fetches check IP-literal URLs and cap the answer.
#[derive(Debug, Clone)]
pub struct OAuthHttp {
    client: reqwest::Client,
    policy: Arc<TargetPolicy>,
}

impl OAuthHttp {
    /// The client for the MCP server at `mcp_url`, which may also reach
    /// `allowed_internal_hosts` (the tool's `auth.allowed_internal_hosts`,
    /// host names or IP addresses) wherever they resolve. Fails on an
    /// entry that is not a bare host, or if the TLS backend cannot start.
    pub fn new(mcp_url: &Url, allowed_internal_hosts: &[String]) -> Result<Self, OAuthError> {
        Self::with_timeout(mcp_url, allowed_internal_hosts, REQUEST_TIMEOUT)
    }

    fn with_timeout(
        mcp_url: &Url,
        allowed_internal_hosts: &[String],
        timeout: Duration,
    ) -> Result<Self, OAuthError> {
        let allowed = allowed_internal_hosts
            .iter()
            .map(|entry| {
                entry
                    .parse::<AllowedHost>()
                    .map_err(|reason| OAuthError::InvalidAllowedHost {
                        value: entry.clone(),
                        reason,
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let policy = TargetPolicy::new(mcp_url, allowed).ok_or_else(|| OAuthError::InvalidUrl {
            what: "MCP server URL",
            value: mcp_url.to_string(),
            reason: "it has no host".into(),
        })?;
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(GuardedResolver(policy.clone()))
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout)
            .user_agent(concat!("amesh/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(OAuthError::Client)?;
        Ok(Self { client, policy })
    }

    /// Sends `request` to `url` once an IP-literal target has passed the
    /// policy (names are checked by the resolver when connecting).
    async fn send(
        &self,
        url: &Url,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, OAuthError> {
        self.policy
            .check_literal(url)
            .await
            .map_err(|refused| OAuthError::TargetRefused {
                url: url.to_string(),
                refused,
            })?;
        request.send().await.map_err(|e| request_failed(url, e))
    }
}

impl std::ops::Deref for OAuthHttp {
    type Target = reqwest::Client;

    fn deref(&self) -> &reqwest::Client {
        &self.client
    }
}

/// The client's resolver: the system resolver, then the policy on every
/// address it returned. The connection uses exactly the checked addresses,
/// so there is no second lookup to rebind.
struct GuardedResolver(Arc<TargetPolicy>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        let name = name.as_str().to_owned();
        Box::pin(async move {
            let addresses = resolve(&name, 0).await?;
            let ips: Vec<_> = addresses.iter().map(|a| a.ip()).collect();
            policy.check(&Host::Domain(name), &ips).await?;
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// A reqwest failure as the OAuth error it is: a target the resolver
/// refused, else no HTTP answer.
pub(crate) fn request_failed(url: &Url, source: reqwest::Error) -> OAuthError {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&source);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<TargetRefused>() {
            return OAuthError::TargetRefused {
                url: url.to_string(),
                refused: refused.clone(),
            };
        }
        cause = e.source();
    }
    OAuthError::Http {
        url: url.to_string(),
        source,
    }
}

/// Reads an answer through the bounded reader; `document` names it in the
/// error.
async fn read(
    url: &Url,
    document: &'static str,
    response: reqwest::Response,
) -> Result<Bytes, OAuthError> {
    read_bounded(response, MAX_OAUTH_BODY)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge { limit } => OAuthError::BodyTooLarge {
                url: url.to_string(),
                document,
                limit,
            },
            BodyError::Transport(source) => request_failed(url, source),
        })
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
    http: &OAuthHttp,
    url: &Url,
    document: &'static str,
) -> Result<Fetched<T>, OAuthError> {
    let request = http
        .client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .header("MCP-Protocol-Version", "2025-06-18");
    let response = http.send(url, request).await?;
    let status = response.status();
    if !status.is_success() {
        return Ok(Fetched::Missing(format!("HTTP {}", status.as_u16())));
    }
    let body = read(url, document, response).await?;
    serde_json::from_slice(&body)
        .map(Fetched::Found)
        .map_err(|e| OAuthError::InvalidDocument {
            url: url.to_string(),
            document,
            reason: e.to_string(),
        })
}

/// What a GET of a page answered, for callers that judge the answer
/// themselves: the status, the `Location` of a redirect (never followed)
/// and the body, bounded like every other answer.
pub(crate) struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub body: Bytes,
}

/// GETs `url` as a browser would load it (HTML accepted), without
/// following a redirect; `document` names the answer in errors.
pub(crate) async fn get_page(
    http: &OAuthHttp,
    url: &Url,
    document: &'static str,
) -> Result<Page, OAuthError> {
    let request = http
        .client
        .get(url.clone())
        .header(reqwest::header::ACCEPT, "text/html, application/json");
    let response = http.send(url, request).await?;
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read(url, document, response).await?;
    Ok(Page {
        status,
        location,
        body,
    })
}

/// POSTs a JSON body and returns (status, body) for the caller to judge;
/// `document` names the answer in errors.
pub(crate) async fn post_json(
    http: &OAuthHttp,
    url: &Url,
    body: &serde_json::Value,
    document: &'static str,
) -> Result<(u16, Bytes), OAuthError> {
    let request = http
        .client
        .post(url.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .json(body);
    let response = http.send(url, request).await?;
    let status = response.status().as_u16();
    Ok((status, read(url, document, response).await?))
}

/// Why the adapter could not produce a response `oauth2` can read.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The request `oauth2` built could not be turned into a reqwest request.
    #[error("could not build the request: {0}")]
    Build(String),
    /// The target's address is more internal than the MCP server's.
    #[error(transparent)]
    Refused(#[from] TargetRefused),
    /// No HTTP answer.
    #[error("{0}")]
    Transport(#[from] reqwest::Error),
    /// The answer ran past [`MAX_OAUTH_BODY`].
    #[error("the answer is larger than {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// A non-2xx answer that is not an RFC 6749 JSON error (e.g. a 500 page).
    #[error("HTTP {status}: {body}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The start of the body, without the request's secrets.
        body: String,
    },
}

/// Runs `oauth2` requests on an [`OAuthHttp`].
pub struct ReqwestAdapter<'a> {
    http: &'a OAuthHttp,
    secrets: Vec<&'a str>,
}

impl<'a> ReqwestAdapter<'a> {
    /// An adapter sending through `http`.
    pub fn new(http: &'a OAuthHttp) -> Self {
        Self {
            http,
            secrets: Vec::new(),
        }
    }

    /// Values the request carries (code, verifier, refresh token, client
    /// secret) to blank out of an error body kept for the log, should the
    /// server echo them.
    pub fn redacting(mut self, secrets: impl IntoIterator<Item = &'a str>) -> Self {
        self.secrets.extend(secrets);
        self
    }

    /// The values [`Self::redacting`] was given.
    pub(crate) fn secrets(&self) -> &[&'a str] {
        &self.secrets
    }
}

impl<'c> AsyncHttpClient<'c> for ReqwestAdapter<'_> {
    type Error = AdapterError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, AdapterError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let url = Url::parse(&request.uri().to_string())
                .map_err(|e| AdapterError::Build(e.to_string()))?;
            self.http.policy.check_literal(&url).await?;
            let request = reqwest::Request::try_from(request)
                .map_err(|e| AdapterError::Build(e.to_string()))?;
            let response = self.http.client.execute(request).await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = read_bounded(response, MAX_OAUTH_BODY)
                .await
                .map_err(|e| match e {
                    BodyError::TooLarge { limit } => AdapterError::TooLarge { limit },
                    BodyError::Transport(e) => AdapterError::Transport(e),
                })?
                .to_vec();
            let is_json = headers
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|ct| ct.to_ascii_lowercase().starts_with("application/json"));
            // oauth2 would report an unparseable error body as a parse
            // failure and lose the status; keep it.
            if !status.is_success() && !is_json {
                return Err(AdapterError::Status {
                    status: status.as_u16(),
                    body: excerpt(&body, &self.secrets),
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

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;

    use super::*;

    /// A server that sends headers and a first byte, then nothing.
    async fn stalling_server() -> (Url, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        let router = Router::new().route(
            "/.well-known/oauth-authorization-server",
            get(|| async {
                let first =
                    futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from("{")) });
                let stalled = futures::stream::pending();
                Body::from_stream(futures::StreamExt::chain(first, stalled))
            }),
        );
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        (base, task)
    }

    #[tokio::test]
    async fn a_stalled_answer_ends_at_the_request_timeout() {
        let (base, server) = stalling_server().await;
        let http = OAuthHttp::with_timeout(&base, &[], Duration::from_millis(500)).unwrap();
        let url = base
            .join("/.well-known/oauth-authorization-server")
            .unwrap();
        let started = Instant::now();
        let err = get_json::<serde_json::Value>(&http, &url, "authorization server metadata")
            .await
            .err()
            .expect("a stalled body fails");
        assert!(
            matches!(&err, OAuthError::Http { source, .. } if source.is_timeout()),
            "{err:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        server.abort();
    }

    #[test]
    fn allow_list_entries_are_checked_when_the_client_is_built() {
        let mcp = Url::parse("https://mcp.example/mcp").unwrap();
        let err = OAuthHttp::new(&mcp, &["https://idp.corp.local/".into()]).unwrap_err();
        assert!(
            matches!(&err, OAuthError::InvalidAllowedHost { value, .. } if value == "https://idp.corp.local/"),
            "{err:?}"
        );
        assert!(OAuthHttp::new(&mcp, &["idp.corp.local".into(), "10.0.0.5".into()]).is_ok());
    }
}
