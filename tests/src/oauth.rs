//! Driving a user through a tool authorization the way a browser would:
//! ask through the gateway, follow the prompt's URL to the demo provider's
//! consent page, come back to the gateway's callback in the user's session.

use amesh_demo::consent_as;
use serde_json::{Value, json};

use crate::stack::{SseReader, Stack};

/// A session cookie (`name=value`) for the token's user.
pub async fn session_cookie(gw: &Stack, token: &str) -> anyhow::Result<String> {
    session_cookie_at(&gw.http, &gw.url(), token).await
}

/// [`session_cookie`] at the gateway at `base` (e.g. one run by `amesh run`).
pub async fn session_cookie_at(
    http: &reqwest::Client,
    base: &str,
    token: &str,
) -> anyhow::Result<String> {
    let login = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"token": token}))
        .send()
        .await?
        .error_for_status()?;
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .ok_or_else(|| anyhow::anyhow!("login set no cookie"))?;
    Ok(cookie.to_string())
}

/// Streams a `tool` request to `agent` as the token's user, authorizes as
/// `user` at the demo provider when prompted, and returns the final task.
pub async fn call_authorizing(
    gw: &Stack,
    token: &str,
    user: &str,
    agent: &str,
    tool: &str,
) -> anyhow::Result<Value> {
    call_authorizing_at(&gw.http, &gw.url(), token, user, agent, tool).await
}

/// [`call_authorizing`] through the gateway at `base`.
pub async fn call_authorizing_at(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    user: &str,
    agent: &str,
    tool: &str,
) -> anyhow::Result<Value> {
    let resp = http
        .post(format!("{base}/api/v1/message:stream"))
        .bearer_auth(token)
        .json(&json!({"agent_name": agent, "data": {"tool": tool}}))
        .send()
        .await?
        .error_for_status()?;
    let mut events = SseReader::new(resp);
    while let Some(ev) = events.next_event().await? {
        match ev.event.as_str() {
            "task" => return Ok(ev.data),
            "error" => anyhow::bail!("error event: {}", ev.data),
            "status" if ev.data["status"]["state"] == "auth-required" => {
                let parts = ev.data["status"]["message"]["parts"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                let url = parts
                    .iter()
                    .find_map(|p| p["data"]["authorization_url"].as_str())
                    .ok_or_else(|| anyhow::anyhow!("prompt without a URL: {}", ev.data))?
                    .parse()?;
                let callback = consent_as(&url, user, true).await?;
                let cookie = session_cookie_at(http, base, token).await?;
                let page = http.get(callback).header("cookie", cookie).send().await?;
                anyhow::ensure!(page.status() == 200, "callback answered {}", page.status());
            }
            _ => {}
        }
    }
    anyhow::bail!("stream ended without a final task")
}

/// The text of a completed task's first artifact part.
pub fn answer(task: &Value) -> String {
    task["artifacts"][0]["parts"][0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}
