//! A real OpenID Connect provider for the SSO tests: npm `oidc-provider`
//! run by `tests/oidc/provider.mjs` (scripts/test installs the package
//! under `target/oidc-provider`; `OIDC_PROVIDER_DIR` points elsewhere).
//!
//! Its users are `alice` / `alice-pw` and `bob` / `bob-pw`; its one client
//! is [`CLIENT_ID`] with [`CLIENT_SECRET`]. [`sign_in_at_provider`] goes
//! through its login with plain HTTP requests, as a browser would.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

pub const CLIENT_ID: &str = "amesh-gateway";
pub const CLIENT_SECRET: &str = "amesh-gateway-secret-for-tests";

/// Where `oidc-provider` is installed.
pub fn provider_dir() -> PathBuf {
    std::env::var_os("OIDC_PROVIDER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/oidc-provider"))
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Why the provider cannot run here (node or the npm package missing).
pub fn missing_prerequisite() -> Option<String> {
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        return Some("node".into());
    }
    let pkg = provider_dir().join("node_modules/oidc-provider/package.json");
    (!pkg.exists()).then(|| format!("npm oidc-provider ({} is missing)", pkg.display()))
}

/// A running provider; killed on drop.
pub struct OidcProvider {
    pub issuer: String,
    _child: tokio::process::Child,
}

impl OidcProvider {
    /// Starts the provider with its client registered for the gateway's
    /// `redirect_uri` and `post_logout_redirect_uri`.
    pub async fn start(redirect_uri: &str, post_logout: &str) -> anyhow::Result<OidcProvider> {
        Self::start_with(redirect_uri, post_logout, "client_secret_basic").await
    }

    /// [`Self::start`] with the one token endpoint authentication method
    /// the provider takes (`client_secret_basic` or `client_secret_post`).
    pub async fn start_with(
        redirect_uri: &str,
        post_logout: &str,
        client_auth: &str,
    ) -> anyhow::Result<OidcProvider> {
        let mut child = tokio::process::Command::new("node")
            .arg(repo().join("tests/oidc/provider.mjs"))
            .env("OIDC_PROVIDER_DIR", provider_dir())
            .env("REDIRECT_URI", redirect_uri)
            .env("POST_LOGOUT_REDIRECT_URI", post_logout)
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env("CLIENT_AUTH", client_auth)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let issuer = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && let Some(issuer) = v["issuer"].as_str()
                {
                    return Ok(issuer.to_owned());
                }
            }
            anyhow::bail!("the provider ended before it listened")
        })
        .await
        .map_err(|_| anyhow::anyhow!("the provider did not listen within 30 s"))??;
        // Keep reading its stdout so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(OidcProvider {
            issuer,
            _child: child,
        })
    }
}

/// A client that keeps cookies and follows no redirects, like a browser
/// whose every step the test looks at.
pub fn browser() -> (reqwest::Client, std::sync::Arc<reqwest::cookie::Jar>) {
    let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
    let client = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    (client, jar)
}

/// Goes from the provider's authorization URL through its login (as
/// `user` / `password`) to the redirect back to `gateway`; returns that
/// callback URL, not yet visited. Without a login page on the way (the
/// provider still has a session) the callback comes at once.
pub async fn sign_in_at_provider(
    client: &reqwest::Client,
    authorize: url::Url,
    user: &str,
    password: &str,
    gateway: &str,
) -> anyhow::Result<(url::Url, bool)> {
    let mut url = authorize;
    let mut asked_to_log_in = false;
    for _ in 0..12 {
        let resp = client.get(url.clone()).send().await?;
        let status = resp.status();
        if status.is_redirection() {
            let next = url.join(location(&resp)?)?;
            if next.as_str().starts_with(gateway) {
                return Ok((next, asked_to_log_in));
            }
            url = next;
            continue;
        }
        if status == 200 && url.path().starts_with("/interaction/") {
            asked_to_log_in = true;
            let action = url.join(&format!("{}/login", url.path()))?;
            let resp = client
                .post(action.clone())
                .form(&[("login", user), ("password", password)])
                .send()
                .await?;
            anyhow::ensure!(
                resp.status().is_redirection(),
                "the provider's login answered {}: {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
            url = action.join(location(&resp)?)?;
            continue;
        }
        anyhow::bail!(
            "unexpected answer {status} at {url}: {}",
            resp.text().await.unwrap_or_default()
        );
    }
    anyhow::bail!("too many redirects at the provider")
}

/// Goes from the authorization URL to the provider's login page and
/// cancels there; returns the callback URL (with `error=access_denied`).
pub async fn cancel_at_provider(
    client: &reqwest::Client,
    authorize: url::Url,
    gateway: &str,
) -> anyhow::Result<url::Url> {
    let mut url = authorize;
    for _ in 0..12 {
        let resp = client.get(url.clone()).send().await?;
        if resp.status().is_redirection() {
            let next = url.join(location(&resp)?)?;
            if next.as_str().starts_with(gateway) {
                return Ok(next);
            }
            url = next;
            continue;
        }
        anyhow::ensure!(
            resp.status() == 200 && url.path().starts_with("/interaction/"),
            "unexpected answer {} at {url}",
            resp.status()
        );
        let resp = client
            .post(url.join(&format!("{}/abort", url.path()))?)
            .send()
            .await?;
        anyhow::ensure!(
            resp.status().is_redirection(),
            "cancel answered {}",
            resp.status()
        );
        url = url.join(location(&resp)?)?;
    }
    anyhow::bail!("too many redirects at the provider")
}

/// Completes RP-initiated logout at the provider: the end-session page's
/// form, confirmed. Returns where the provider sends the browser after.
pub async fn confirm_logout(client: &reqwest::Client, logout_url: &str) -> anyhow::Result<String> {
    let url = url::Url::parse(logout_url)?;
    let resp = client.get(url.clone()).send().await?;
    anyhow::ensure!(
        resp.status() == 200,
        "end session answered {}",
        resp.status()
    );
    let page = resp.text().await?;
    let action = attr_after(&page, "<form", "action=\"")
        .ok_or_else(|| anyhow::anyhow!("no form on the end-session page: {page}"))?;
    let xsrf = attr_after(&page, "name=\"xsrf\"", "value=\"")
        .ok_or_else(|| anyhow::anyhow!("no xsrf on the end-session page: {page}"))?;
    let resp = client
        .post(url.join(&action)?)
        .form(&[("xsrf", xsrf.as_str()), ("logout", "yes")])
        .send()
        .await?;
    anyhow::ensure!(
        resp.status().is_redirection(),
        "logout confirmation answered {}",
        resp.status()
    );
    Ok(location(&resp)?.to_owned())
}

/// The quoted value after `marker`, then `attr`, in `html`.
fn attr_after(html: &str, marker: &str, attr: &str) -> Option<String> {
    let rest = &html[html.find(marker)?..];
    let rest = &rest[rest.find(attr)? + attr.len()..];
    Some(rest[..rest.find('"')?].replace("&amp;", "&"))
}

pub fn location(resp: &reqwest::Response) -> anyhow::Result<&str> {
    resp.headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| anyhow::anyhow!("a redirect without Location"))
}
