//! The demo's authorization server endpoints other than consent: metadata
//! (RFC 8414 and RFC 9728), dynamic registration (RFC 7591), token
//! (RFC 6749 + PKCE + RFC 8707) and revocation (RFC 7009).
//!
//! Handlers only translate HTTP to the rules in `store.rs` and back.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::store::{DemoState, Issued, SCOPES, TokenError};

/// `GET /.well-known/oauth-authorization-server`
pub(crate) async fn server_metadata(State(state): State<Arc<DemoState>>) -> Json<Value> {
    let base = &state.base;
    let mut metadata = json!({
        "issuer": base,
        "authorization_endpoint": format!("{}/authorize", state.browser_base),
        "token_endpoint": format!("{base}/token"),
        "registration_endpoint": format!("{base}/register"),
        "revocation_endpoint": format!("{base}/revoke"),
        "scopes_supported": SCOPES,
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "authorization_response_iss_parameter_supported": true,
    });
    if state.settings().client_id_metadata_documents {
        metadata["client_id_metadata_document_supported"] = json!(true);
    }
    Json(metadata)
}

/// The longest Client ID Metadata Document the demo reads.
const MAX_CLIENT_DOCUMENT: usize = 16 * 1024;

/// When Client ID Metadata Documents are on and `client_id` is a URL the
/// demo does not know yet, fetches the document there and adopts the
/// client it describes (as a server supporting the draft does on first
/// sight). The document must name that very URL as its `client_id` and be
/// a public client; http is accepted only on this machine. A refusal is
/// the reason, for the error page or `invalid_client`.
pub(crate) async fn adopt_client_document(
    state: &DemoState,
    client_id: Option<&str>,
) -> Result<(), String> {
    let Some(client_id) = client_id else {
        return Ok(());
    };
    if !state.settings().client_id_metadata_documents || state.client(client_id).is_some() {
        return Ok(());
    }
    let Ok(url) = url::Url::parse(client_id) else {
        return Ok(()); // not a URL: an ordinary (unknown) client id
    };
    let local = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
    if !(url.scheme() == "https" || (url.scheme() == "http" && local)) {
        return Err(format!("client_id {client_id:?} must be an https URL"));
    }
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let response = http
        .get(url.clone())
        .send()
        .await
        .map_err(|e| format!("cannot fetch the client metadata document: {e}"))?;
    if !response.status().is_success() {
        return Err(format!(
            "the client metadata document answered HTTP {}",
            response.status()
        ));
    }
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if body.len() > MAX_CLIENT_DOCUMENT {
        return Err("the client metadata document is too large".into());
    }
    let document: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("the client metadata document is not JSON: {e}"))?;
    if document.get("client_id").and_then(Value::as_str) != Some(client_id) {
        return Err("the client metadata document names another client_id".into());
    }
    let method = document
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str);
    if method.is_some_and(|m| m != "none") {
        return Err("the client metadata document must describe a public client".into());
    }
    let redirect_uris: Vec<String> = document
        .get("redirect_uris")
        .and_then(Value::as_array)
        .map(|uris| {
            uris.iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if redirect_uris.is_empty() {
        return Err("the client metadata document lists no redirect_uris".into());
    }
    state.adopt_metadata_client(client_id, redirect_uris);
    Ok(())
}

/// RFC 9728 metadata for the resource at `path` ("" for the whole provider).
pub(crate) fn resource_metadata(state: &DemoState, path: &str) -> Json<Value> {
    Json(json!({
        "resource": state.resource_of(path),
        "authorization_servers": [state.base],
        "scopes_supported": SCOPES,
        "bearer_methods_supported": ["header"],
        "resource_name": "amesh demo MCP server",
    }))
}

/// `POST /register`
pub(crate) async fn register(
    State(state): State<Arc<DemoState>>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return registration_error("invalid_client_metadata", "body is not a JSON object");
    };
    let redirect_uris: Vec<String> = match request.get("redirect_uris").and_then(Value::as_array) {
        Some(uris) if !uris.is_empty() => {
            let uris: Option<Vec<String>> =
                uris.iter().map(|u| u.as_str().map(str::to_owned)).collect();
            match uris {
                Some(uris) => uris,
                None => {
                    return registration_error(
                        "invalid_redirect_uri",
                        "redirect_uris must be strings",
                    );
                }
            }
        }
        _ => return registration_error("invalid_redirect_uri", "redirect_uris is required"),
    };
    if let Some(bad) = redirect_uris.iter().find(|u| {
        url::Url::parse(u).map_or(true, |u| {
            !matches!(u.scheme(), "http" | "https") || u.fragment().is_some()
        })
    }) {
        return registration_error(
            "invalid_redirect_uri",
            &format!("{bad:?} is not an absolute http(s) URI"),
        );
    }
    let method = request
        .get("token_endpoint_auth_method")
        .and_then(Value::as_str)
        .unwrap_or("client_secret_basic")
        .to_owned();
    if !matches!(
        method.as_str(),
        "none" | "client_secret_basic" | "client_secret_post"
    ) {
        return registration_error(
            "invalid_client_metadata",
            &format!("unsupported token_endpoint_auth_method {method:?}"),
        );
    }
    let (client_id, secret) = state.register(redirect_uris.clone(), method != "none");
    let mut answer = json!({
        "client_id": client_id,
        "client_id_issued_at": amesh_mcp::clock::unix_now(),
        "redirect_uris": redirect_uris,
        "token_endpoint_auth_method": method,
        "grant_types": request.get("grant_types").cloned().unwrap_or(json!(["authorization_code"])),
        "response_types": ["code"],
        "client_name": request.get("client_name").cloned().unwrap_or(Value::Null),
    });
    if let Some(secret) = secret {
        answer["client_secret"] = json!(secret);
        answer["client_secret_expires_at"] = json!(0);
    }
    (StatusCode::CREATED, no_store(), Json(answer)).into_response()
}

fn registration_error(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

/// `POST /token`
pub(crate) async fn token(
    State(state): State<Arc<DemoState>>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Err(description) =
        adopt_client_document(&state, form.get("client_id").map(String::as_str)).await
    {
        return token_error(TokenError {
            error: "invalid_client",
            description,
            status: 401,
        });
    }
    match token_grant(&state, &headers, &form) {
        Ok(issued) => {
            let mut body = json!({
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "expires_in": issued.expires_in,
                "scope": issued.scopes.join(" "),
            });
            if let Some(refresh) = issued.refresh_token {
                body["refresh_token"] = json!(refresh);
            }
            (StatusCode::OK, no_store(), Json(body)).into_response()
        }
        Err(e) => token_error(e),
    }
}

fn token_grant(
    state: &DemoState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<Issued, TokenError> {
    let field = |name: &str| form.get(name).map(String::as_str).filter(|v| !v.is_empty());
    let client_id = authenticate(state, headers, form)?;
    let resource = field("resource");
    if let Some(resource) = resource
        && !state.is_our_resource(resource)
    {
        return Err(TokenError {
            error: "invalid_target",
            description: format!("{resource:?} is not a resource of this server"),
            status: 400,
        });
    }
    match field("grant_type") {
        Some("authorization_code") => {
            let code = field("code").ok_or_else(|| invalid_request("code is required"))?;
            state.redeem_code(
                &client_id,
                code,
                field("redirect_uri"),
                field("code_verifier"),
                resource,
            )
        }
        Some("refresh_token") => {
            let refresh = field("refresh_token")
                .ok_or_else(|| invalid_request("refresh_token is required"))?;
            state.redeem_refresh(&client_id, refresh, field("scope"), resource)
        }
        Some(other) => Err(TokenError {
            error: "unsupported_grant_type",
            description: format!("grant_type {other:?} is not supported"),
            status: 400,
        }),
        None => Err(invalid_request("grant_type is required")),
    }
}

/// Client authentication: HTTP Basic (RFC 6749 §2.3.1, form-urlencoded
/// parts) or `client_id`/`client_secret` in the form. Returns the client id.
fn authenticate(
    state: &DemoState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<String, TokenError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| STANDARD.decode(b64.trim()).ok())
        .and_then(|raw| String::from_utf8(raw).ok())
        .and_then(|pair| {
            let (id, secret) = pair.split_once(':')?;
            Some((form_decode(id), form_decode(secret)))
        });
    let (client_id, secret) = match basic {
        Some((id, secret)) => (id, Some(secret)),
        None => {
            let id = form.get("client_id").cloned().ok_or_else(|| TokenError {
                error: "invalid_client",
                description: "no client authentication".into(),
                status: 401,
            })?;
            (id, form.get("client_secret").cloned())
        }
    };
    state.authenticate(&client_id, secret.as_deref())?;
    Ok(client_id)
}

fn form_decode(part: &str) -> String {
    url::form_urlencoded::parse(format!("x={part}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn invalid_request(description: &str) -> TokenError {
    TokenError {
        error: "invalid_request",
        description: description.into(),
        status: 400,
    }
}

fn token_error(e: TokenError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = (
        status,
        no_store(),
        Json(json!({"error": e.error, "error_description": e.description})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED
        && let Ok(value) = "Basic realm=\"amesh-demo\"".parse()
    {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// `POST /revoke` (RFC 7009): always 200, known token or not.
pub(crate) async fn revoke(
    State(state): State<Arc<DemoState>>,
    Form(form): Form<HashMap<String, String>>,
) -> StatusCode {
    if let Some(token) = form.get("token") {
        state.revoke(token);
    }
    StatusCode::OK
}

fn no_store() -> [(header::HeaderName, &'static str); 2] {
    [
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
    ]
}
