//! `/authorize`: the demo's login-and-consent page.
//!
//! There are no passwords: the person at the browser types (or picks) a user
//! name and approves, which is all a demo of *per-user* delegation needs.
//! GET shows the form (prefilled from `login_hint`); POST carries the same
//! authorization parameters as hidden fields plus `user` and `approve`, so a
//! test can drive it like a browser with one form POST. Parameters are
//! checked on both: a bad client or redirect URI gets an error page (never a
//! redirect to an unregistered URI); anything else redirects back with an
//! RFC 6749 §4.1.2.1 error.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use url::Url;

use super::auth_server::adopt_client_document;
use super::store::{DemoState, Grant, PendingCode, SCOPES};

type Params = HashMap<String, String>;

/// How long a code lives.
const CODE_TTL: Duration = Duration::from_secs(300);

/// The parameters of an authorization request that passed the checks.
struct Checked {
    client_id: String,
    redirect_uri: String,
    state: Option<String>,
    code_challenge: String,
    scopes: Vec<String>,
    resource: Option<String>,
    /// RFC 9207 `iss`, sent with every response that goes back.
    issuer: String,
}

/// `GET /authorize`
pub(crate) async fn show(
    State(state): State<Arc<DemoState>>,
    Query(params): Query<Params>,
) -> Response {
    if let Err(why) =
        adopt_client_document(&state, params.get("client_id").map(String::as_str)).await
    {
        return error_page(&why).into_response();
    }
    match check(&state, &params) {
        Ok(_) => page(&params, None, StatusCode::OK),
        Err(refusal) => refusal.into_response(),
    }
}

/// `POST /authorize` (the consent form)
pub(crate) async fn decide(
    State(state): State<Arc<DemoState>>,
    Form(params): Form<Params>,
) -> Response {
    if let Err(why) =
        adopt_client_document(&state, params.get("client_id").map(String::as_str)).await
    {
        return error_page(&why).into_response();
    }
    let checked = match check(&state, &params) {
        Ok(checked) => checked,
        Err(refusal) => return refusal.into_response(),
    };
    if params.get("approve").map(String::as_str) != Some("yes") {
        return back(
            &checked,
            &[
                ("error", "access_denied"),
                ("error_description", "the user denied access"),
            ],
        )
        .into_response();
    }
    let user = params.get("user").map(|u| u.trim()).unwrap_or("");
    if !valid_user(user) {
        return page(
            &params,
            Some("Type a user name: 1 to 64 letters, digits, '.', '_', '-' or '@'."),
            StatusCode::BAD_REQUEST,
        );
    }
    let code = state.issue_code(PendingCode {
        grant: Grant {
            user: user.to_owned(),
            client_id: checked.client_id.clone(),
            scopes: checked.scopes.clone(),
            resource: checked.resource.clone(),
        },
        redirect_uri: checked.redirect_uri.clone(),
        code_challenge: checked.code_challenge.clone(),
        expires: Instant::now() + CODE_TTL,
    });
    back(&checked, &[("code", &code)]).into_response()
}

fn check(state: &DemoState, params: &Params) -> Result<Checked, Bounce> {
    let get = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let client_id = get("client_id").ok_or_else(|| error_page("client_id is missing"))?;
    let client = state
        .client(client_id)
        .ok_or_else(|| error_page(&format!("unknown client {client_id:?}; register it first")))?;
    let redirect_uri = get("redirect_uri").ok_or_else(|| error_page("redirect_uri is missing"))?;
    if !client
        .redirect_uris
        .iter()
        .any(|registered| registered == redirect_uri)
    {
        return Err(error_page(&format!(
            "redirect_uri {redirect_uri:?} is not registered for this client (exact match required)"
        )));
    }
    let mut checked = Checked {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        state: get("state").map(str::to_owned),
        code_challenge: String::new(),
        scopes: Vec::new(),
        resource: get("resource").map(str::to_owned),
        issuer: state.base.clone(),
    };
    // From here on, errors go back to the client.
    if get("response_type") != Some("code") {
        return Err(back(&checked, &[("error", "unsupported_response_type")]));
    }
    match (get("code_challenge"), get("code_challenge_method")) {
        (Some(challenge), Some("S256")) => checked.code_challenge = challenge.to_owned(),
        _ => {
            return Err(back(
                &checked,
                &[
                    ("error", "invalid_request"),
                    ("error_description", "PKCE with S256 is required"),
                ],
            ));
        }
    }
    checked.scopes = match get("scope") {
        Some(scope) => scope.split_whitespace().map(str::to_owned).collect(),
        None => vec!["mcp".to_owned()],
    };
    if let Some(unknown) = checked
        .scopes
        .iter()
        .find(|s| !SCOPES.contains(&s.as_str()))
    {
        let description = format!("unknown scope {unknown}");
        return Err(back(
            &checked,
            &[
                ("error", "invalid_scope"),
                ("error_description", &description),
            ],
        ));
    }
    match checked.resource.as_deref() {
        None if state.settings().require_resource => {
            return Err(back(
                &checked,
                &[
                    ("error", "invalid_target"),
                    ("error_description", "the resource parameter is required"),
                ],
            ));
        }
        Some(resource) if !state.is_our_resource(resource) => {
            return Err(back(
                &checked,
                &[
                    ("error", "invalid_target"),
                    ("error_description", "unknown resource"),
                ],
            ));
        }
        _ => {}
    }
    Ok(checked)
}

/// Where a request ends when it does not show the consent form.
enum Bounce {
    /// An error page, for when redirecting would be unsafe.
    Page(String),
    /// Back to the client's redirect URI.
    Redirect(Url),
}

impl IntoResponse for Bounce {
    fn into_response(self) -> Response {
        match self {
            Self::Page(message) => {
                let body = format!(
                    "<!doctype html><title>Authorization error</title><h1>Authorization error</h1><p>{}</p>",
                    escape(&message)
                );
                (StatusCode::BAD_REQUEST, Html(body)).into_response()
            }
            Self::Redirect(url) => Redirect::to(url.as_str()).into_response(),
        }
    }
}

/// Redirects to the client's redirect URI with `pairs`, `state` and `iss`.
fn back(checked: &Checked, pairs: &[(&str, &str)]) -> Bounce {
    let Ok(mut url) = Url::parse(&checked.redirect_uri) else {
        return error_page("redirect_uri is not a URL");
    };
    {
        let mut query = url.query_pairs_mut();
        for (key, value) in pairs {
            query.append_pair(key, value);
        }
        if let Some(state) = &checked.state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", &checked.issuer);
    }
    Bounce::Redirect(url)
}

fn valid_user(user: &str) -> bool {
    (1..=64).contains(&user.len())
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
}

fn error_page(message: &str) -> Bounce {
    Bounce::Page(message.to_owned())
}

/// The consent form, carrying the request's parameters as hidden fields.
fn page(params: &Params, problem: Option<&str>, status: StatusCode) -> Response {
    let mut hidden = String::new();
    let mut keys: Vec<&String> = params
        .keys()
        .filter(|k| !["user", "approve"].contains(&k.as_str()))
        .collect();
    keys.sort();
    for key in keys {
        hidden.push_str(&format!(
            "<input type=\"hidden\" name=\"{}\" value=\"{}\">\n",
            escape(key),
            escape(&params[key])
        ));
    }
    let hint = params
        .get("user")
        .or_else(|| params.get("login_hint"))
        .map(String::as_str)
        .unwrap_or("");
    let scopes = params.get("scope").map(String::as_str).unwrap_or("mcp");
    let problem = problem
        .map(|p| format!("<p class=\"problem\">{}</p>", escape(p)))
        .unwrap_or_default();
    let body = format!(
        r#"<!doctype html>
<html><head><meta charset="utf-8"><title>amesh demo provider: sign in</title>
<style>body{{font-family:sans-serif;max-width:28rem;margin:3rem auto}}.problem{{color:#b00}}button{{margin-right:.5rem}}</style>
</head><body>
<h1>amesh demo provider</h1>
<p>An amesh agent asks to use the demo MCP tools as you, with scopes <code>{scopes}</code>.</p>
{problem}
<form method="post" action="/authorize">
{hidden}<label>User name <input name="user" value="{hint}" list="users" autofocus required></label>
<datalist id="users"><option value="alice"><option value="bob"><option value="carol"></datalist>
<p><button name="approve" value="yes">Allow</button><button name="approve" value="no">Deny</button></p>
</form></body></html>"#,
        scopes = escape(scopes),
        hint = escape(hint),
    );
    (status, Html(body)).into_response()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}
