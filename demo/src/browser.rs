//! A browser stand-in for the demo's consent page.
//!
//! End-to-end tests (here and in the workspace `tests/` crate) need to "log
//! in" at the demo provider the way a person would: load the page the agent
//! sent them to, submit the form as some user, and land on the gateway
//! callback. This does exactly that over HTTP, without following the final
//! redirect, and returns the callback URL with its `code`/`error` and `state`.

use anyhow::{Context, bail};
use url::Url;

/// Loads `authorization_url`, submits the consent form as `user`
/// (approving or denying) and returns where the provider redirects.
pub async fn consent_as(authorization_url: &Url, user: &str, approve: bool) -> anyhow::Result<Url> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let page = http
        .get(authorization_url.clone())
        .send()
        .await
        .context("loading the consent page")?;
    let status = page.status();
    let html = page.text().await?;
    if !status.is_success() || !html.contains("<form method=\"post\"") {
        bail!("no consent form at {authorization_url} (HTTP {status}): {html}");
    }
    // The form's hidden fields are the authorization request's parameters.
    let mut form: Vec<(String, String)> = authorization_url.query_pairs().into_owned().collect();
    form.push(("user".into(), user.into()));
    form.push(("approve".into(), if approve { "yes" } else { "no" }.into()));
    let mut action = authorization_url.clone();
    action.set_query(None);
    let decision = http.post(action).form(&form).send().await?;
    if !decision.status().is_redirection() {
        let status = decision.status();
        bail!(
            "consent was not accepted (HTTP {status}): {}",
            decision.text().await?
        );
    }
    let location = decision
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .context("redirect without Location")?;
    Ok(Url::parse(location)?)
}
