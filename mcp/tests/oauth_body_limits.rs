//! Every OAuth response body is read through one bounded reader: a
//! metadata document, a registration answer (accepted or refused) and a
//! token answer (from the code exchange or a refresh) that runs past the
//! cap is refused with the document's name and the limit, and the read
//! stops there instead of buffering the rest.
//!
//! The servers stream a body far larger than the cap and count the bytes
//! they managed to hand to the socket before the client hung up: that
//! count stays near the cap (plus what loopback socket buffers hold), far
//! from the whole body.

mod oauth_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use amesh_mcp::oauth::{
    AuthServer, OAuthClient, OAuthError, PkceVerifier, TokenSet, discover, exchange_code, refresh,
    register,
};
use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use oauth_support::{as_metadata, http, pr_metadata, redirect_uri};
use url::Url;

/// The cap the OAuth client applies (1 MiB).
const CAP: usize = 1024 * 1024;
/// What a flooding server would send if nobody stopped reading.
const FLOOD: usize = 64 * 1024 * 1024;
const CHUNK: usize = 64 * 1024;

/// A server whose `flooded` path answers `status` with an endless-looking
/// JSON body ([`FLOOD`] bytes), and serves small documents elsewhere.
struct Flood {
    base: Url,
    /// Bytes of the flooding body handed to the connection so far.
    sent: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Flood {
    /// Bytes sent, once the server has noticed the client is gone.
    async fn settled_sent(&self) -> usize {
        let mut last = self.sent.load(Ordering::SeqCst);
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let now = self.sent.load(Ordering::SeqCst);
            if now == last {
                return now;
            }
            last = now;
        }
    }
}

fn flooding_body(sent: Arc<AtomicUsize>) -> Body {
    // Starts like a document, so a reader without a cap would take it all.
    let opening = Bytes::from_static(br#"{"resource": ""#);
    let stream = futures::stream::unfold(0usize, move |produced| {
        let sent = sent.clone();
        let opening = opening.clone();
        async move {
            if produced >= FLOOD {
                return None;
            }
            let chunk = if produced == 0 {
                opening
            } else {
                Bytes::from(vec![b'a'; CHUNK])
            };
            sent.fetch_add(chunk.len(), Ordering::SeqCst);
            let next = produced + chunk.len();
            Some((Ok::<_, std::io::Error>(chunk), next))
        }
    });
    Body::from_stream(stream)
}

/// `docs(base)` gives the small documents; `flooded` answers `status`
/// with the flood (with `Content-Length` when `declare_length`).
async fn flood_server(
    flooded: &'static str,
    status: u16,
    declare_length: bool,
    docs: impl FnOnce(&str) -> Vec<(&'static str, serde_json::Value)>,
) -> Flood {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let docs: Arc<Vec<(&'static str, serde_json::Value)>> = Arc::new(docs(&base));
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let router = Router::new().fallback(move |uri: Uri| {
        let docs = docs.clone();
        let counter = counter.clone();
        async move {
            if uri.path() == flooded {
                let mut response = Response::builder()
                    .status(status)
                    .header(header::CONTENT_TYPE, "application/json");
                if declare_length {
                    response = response.header(header::CONTENT_LENGTH, FLOOD);
                }
                return response.body(flooding_body(counter)).unwrap();
            }
            match docs.iter().find(|(path, _)| *path == uri.path()) {
                Some((_, doc)) => axum::Json(doc.clone()).into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
    });
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Flood {
        base: Url::parse(&base).unwrap(),
        sent,
        task,
    }
}

/// The error names the document and the limit, came quickly, and the
/// server could not push much more than the cap.
async fn assert_capped(flood: &Flood, started: Instant, err: &OAuthError, document: &str) {
    let message = err.to_string();
    assert!(
        message.contains(&format!("larger than {CAP} bytes")),
        "{message}"
    );
    assert!(message.contains(document), "{message}");
    assert!(started.elapsed() < Duration::from_secs(20), "{message}");
    let sent = flood.settled_sent().await;
    assert!(
        sent < FLOOD / 2,
        "the server pushed {sent} of {FLOOD} bytes before the client hung up"
    );
}

fn mcp(flood: &Flood) -> Url {
    flood.base.join("/mcp").unwrap()
}

fn configured(flood: &Flood) -> AuthServer {
    AuthServer::configured(
        &mcp(flood),
        flood.base.join("/authorize").unwrap(),
        flood.base.join("/token").unwrap(),
    )
}

#[tokio::test]
async fn oversized_resource_metadata_is_refused_at_the_cap() {
    let flood = flood_server(
        "/.well-known/oauth-protected-resource/mcp",
        200,
        false,
        |_| vec![],
    )
    .await;
    let started = Instant::now();
    let err = discover(&http(), &mcp(&flood), None).await.unwrap_err();
    assert_capped(&flood, started, &err, "protected resource metadata").await;
}

#[tokio::test]
async fn oversized_authorization_server_metadata_is_refused_at_the_cap() {
    let flood = flood_server(
        "/.well-known/oauth-authorization-server",
        200,
        false,
        |base| {
            vec![(
                "/.well-known/oauth-protected-resource/mcp",
                pr_metadata(&format!("{base}/mcp"), base),
            )]
        },
    )
    .await;
    let started = Instant::now();
    let err = discover(&http(), &mcp(&flood), None).await.unwrap_err();
    assert_capped(&flood, started, &err, "authorization server metadata").await;
}

#[tokio::test]
async fn declared_oversized_length_is_refused_before_reading() {
    let flood = flood_server(
        "/.well-known/oauth-protected-resource/mcp",
        200,
        true,
        |_| vec![],
    )
    .await;
    let started = Instant::now();
    let err = discover(&http(), &mcp(&flood), None).await.unwrap_err();
    assert_capped(&flood, started, &err, "protected resource metadata").await;
}

#[tokio::test]
async fn oversized_registration_answers_are_refused_at_the_cap() {
    for status in [201, 400] {
        let flood = flood_server("/register", status, false, |base| {
            vec![
                (
                    "/.well-known/oauth-protected-resource/mcp",
                    pr_metadata(&format!("{base}/mcp"), base),
                ),
                ("/.well-known/oauth-authorization-server", as_metadata(base)),
            ]
        })
        .await;
        let server = discover(&http(), &mcp(&flood), None).await.unwrap();
        let started = Instant::now();
        let err = register(&http(), &server, &redirect_uri(), "amesh agent t")
            .await
            .unwrap_err();
        assert_capped(&flood, started, &err, "client registration").await;
    }
}

#[tokio::test]
async fn oversized_token_answers_are_refused_at_the_cap() {
    for status in [200, 400, 500] {
        let flood = flood_server("/token", status, false, |_| vec![]).await;
        let server = configured(&flood);
        let client = OAuthClient::configured("client-1", None);
        let started = Instant::now();
        let err = exchange_code(
            &http(),
            &server,
            &client,
            "code-1",
            &PkceVerifier::new("v".repeat(43)),
            &redirect_uri(),
            &[],
        )
        .await
        .unwrap_err();
        assert_capped(&flood, started, &err, "token endpoint").await;
    }
    let flood = flood_server("/token", 200, false, |_| vec![]).await;
    let tokens = TokenSet {
        access_token: "at".into(),
        refresh_token: Some("rt".into()),
        token_type: "Bearer".into(),
        expires_at: None,
        scopes: vec![],
    };
    let started = Instant::now();
    let err = refresh(
        &http(),
        &configured(&flood),
        &OAuthClient::configured("client-1", None),
        &tokens,
    )
    .await
    .unwrap_err();
    assert_capped(&flood, started, &err, "token endpoint").await;
}
