//! The web page: one HTML file, a few small script modules (the page, one
//! agent turn, the accounts view, DOM helpers, the Markdown renderer) and
//! one style sheet, compiled into the binary from `web/`.
//! No build step and no CDN: the gateway serves every byte the page uses,
//! which is what lets the Content-Security-Policy allow only `'self'`.
//!
//! Every response also gets the usual security headers here (one layer in
//! front of every route), so a page the gateway renders elsewhere, such
//! as the tool authorization callback, is covered as well.

use axum::extract::{Path, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("web/index.html");
const APP_JS: &str = include_str!("web/app.js");
const TURN_JS: &str = include_str!("web/turn.js");
const ACCOUNTS_JS: &str = include_str!("web/accounts.js");
const DOM_JS: &str = include_str!("web/dom.js");
const MARKDOWN_JS: &str = include_str!("web/markdown.js");

/// Every script module, by the name it is served under.
const SCRIPTS: [(&str, &str); 5] = [
    ("app.js", APP_JS),
    ("turn.js", TURN_JS),
    ("accounts.js", ACCOUNTS_JS),
    ("dom.js", DOM_JS),
    ("markdown.js", MARKDOWN_JS),
];
const APP_CSS: &str = include_str!("web/app.css");

/// No inline script or style, nothing from other origins, no framing,
/// no plugins, forms post only here. `img-src` allows `data:` for the
/// inline icons of the style sheet only; answers' Markdown has no images.
pub(crate) const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; font-src 'self'; manifest-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub(crate) async fn index() -> Response {
    asset_response(INDEX, "text/html; charset=utf-8")
}

/// `GET /assets/{file}`.
pub(crate) async fn asset(Path(file): Path<String>) -> Response {
    if file == "app.css" {
        return asset_response(APP_CSS, "text/css; charset=utf-8");
    }
    match SCRIPTS.iter().find(|(name, _)| *name == file) {
        Some((_, js)) => asset_response(js, "text/javascript; charset=utf-8"),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}

fn asset_response(body: &'static str, content_type: &'static str) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Small files compiled into the binary: revalidating costs little and a
    // new gateway version is picked up at once.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// Adds the security headers to every response.
pub(crate) async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Same-origin requests keep their Referer (the Origin check falls back
    // to it); other sites never see the gateway's paths or OAuth states.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    h.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=(), payment=()"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_no_inline_script_or_style_and_nothing_from_elsewhere() {
        assert!(!INDEX.contains("<script>"), "inline script in index.html");
        assert!(!INDEX.contains("<style"), "inline style in index.html");
        assert!(!INDEX.contains(" style="), "inline style attribute");
        assert!(!INDEX.contains(" on"), "inline event handler attribute");
        for text in SCRIPTS.iter().map(|(_, js)| *js).chain([INDEX, APP_CSS]) {
            assert!(!text.contains("http://"), "absolute URL in a page asset");
            assert!(!text.contains("https://"), "absolute URL in a page asset");
        }
    }

    #[test]
    fn agent_data_never_becomes_markup_except_through_the_renderer() {
        // The renderer builds DOM nodes; nothing parses HTML strings.
        for (name, js) in SCRIPTS {
            for sink in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
                "setAttribute('on",
            ] {
                assert!(!js.contains(sink), "{sink} in {name}");
            }
        }
        // The page opens two kinds of link itself, each after the http(s)
        // check: an authorization URL and a tool server's page (URL-mode
        // elicitation); the accounts view offers one as a link, also checked.
        let opens: usize = SCRIPTS
            .iter()
            .map(|(_, js)| js.matches("window.open(").count())
            .sum();
        assert_eq!(opens, 2);
        assert!(TURN_JS.contains("const href = safeUrl(d.authorization_url || '');"));
        assert!(TURN_JS.contains("const href = safeUrl(d.elicitation_url || '');"));
        assert!(TURN_JS.contains("window.open(href, '_blank', 'noopener,noreferrer')"));
        assert!(TURN_JS.contains("window.open(url.href, '_blank', 'noopener,noreferrer')"));
        assert!(
            ACCOUNTS_JS.contains("const href = safeUrl((await r.json()).authorization_url || '');")
        );
        assert_eq!(ACCOUNTS_JS.matches("href,").count(), 1);
    }
}
