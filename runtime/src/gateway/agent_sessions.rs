//! The gateway's questions to agents about a user's conversations
//! (`amesh/sessions/*`, see `a2a::sessions`), asked with the user's signed
//! identity so each agent answers for that user only.
//!
//! Every discovered agent is asked at once, each with [`WAIT`] to answer:
//! an agent that is down or slow costs the page at most that long and is
//! named in the answer's `unavailable`, never holding up the others. An
//! agent that does not know the methods (not amesh, or older) simply has
//! no conversations.

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::GatewayInner;
use super::agent_requests::ask_agent_for;
use super::auth::User;
use crate::a2a::client::Event;
use crate::a2a::jsonrpc;
use crate::a2a::sessions::{
    self, ContextParams, ListParams, MAX_PAGE, RenameParams, Session, SessionList, SessionSummary,
};
use crate::a2a::{Part, StreamResult};

/// How long one agent may take to answer.
pub(crate) const WAIT: Duration = Duration::from_secs(3);

/// What one agent said.
enum Answer<T> {
    Data(T),
    /// It has no such conversation of this user.
    NotFound,
    /// It does not speak `amesh/sessions/*`.
    Unsupported,
    Failed(String),
}

async fn ask<T: DeserializeOwned>(
    inner: &Arc<GatewayInner>,
    user: &User,
    agent: &str,
    method: &str,
    params: impl serde::Serialize,
) -> Answer<T> {
    match ask_agent_for(inner, user, agent, method, params, WAIT).await {
        Ok(Some(Event::Final(StreamResult::Message(m)))) => {
            let data = m.parts.into_iter().find_map(|p| match p {
                Part::Data { data, .. } => Some(data),
                _ => None,
            });
            match data.map(serde_json::from_value::<T>) {
                Some(Ok(t)) => Answer::Data(t),
                Some(Err(e)) => Answer::Failed(format!("unreadable answer: {e}")),
                None => Answer::Failed("answered without data".into()),
            }
        }
        Ok(Some(Event::Error(e))) => match e.code {
            jsonrpc::TASK_NOT_FOUND => Answer::NotFound,
            jsonrpc::METHOD_NOT_FOUND => Answer::Unsupported,
            _ => Answer::Failed(e.message),
        },
        Ok(Some(_)) => Answer::Failed("sent an unexpected answer".into()),
        Ok(None) => Answer::Failed(format!("no answer within {WAIT:?}")),
        Err(e) => Answer::Failed(e.message),
    }
}

/// `agent`'s entry in an answer's `unavailable` list.
fn unavailable(agent: &str, error: &str) -> Value {
    json!({ "agent": agent, "error": error })
}

/// Every discovered agent's name.
fn agents(inner: &GatewayInner) -> Vec<String> {
    inner.agents.list().into_iter().map(|c| c.name).collect()
}

/// The user's conversations at every agent (the newest [`MAX_PAGE`] of
/// each), as (agent, summary); and the agents that did not answer.
pub(crate) async fn list(
    inner: &Arc<GatewayInner>,
    user: &User,
) -> (Vec<(String, SessionSummary)>, Vec<Value>) {
    let asks = agents(inner).into_iter().map(|agent| async move {
        let params = ListParams {
            limit: Some(MAX_PAGE),
            before_ms: None,
        };
        let answer = ask::<SessionList>(inner, user, &agent, sessions::LIST, params).await;
        (agent, answer)
    });
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for (agent, answer) in futures::future::join_all(asks).await {
        match answer {
            Answer::Data(list) => {
                found.extend(list.sessions.into_iter().map(|s| (agent.clone(), s)));
            }
            Answer::NotFound | Answer::Unsupported => {}
            Answer::Failed(why) => problems.push(unavailable(&agent, &why)),
        }
    }
    (found, problems)
}

/// Conversation `id` at every agent that has it, as (agent, session); and
/// the agents that did not answer.
pub(crate) async fn get(
    inner: &Arc<GatewayInner>,
    user: &User,
    id: &str,
) -> (Vec<(String, Session)>, Vec<Value>) {
    let asks = agents(inner).into_iter().map(|agent| async move {
        let params = ContextParams {
            context_id: id.to_owned(),
        };
        let answer = ask::<Session>(inner, user, &agent, sessions::GET, params).await;
        (agent, answer)
    });
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for (agent, answer) in futures::future::join_all(asks).await {
        match answer {
            Answer::Data(session) => found.push((agent, session)),
            Answer::NotFound | Answer::Unsupported => {}
            Answer::Failed(why) => problems.push(unavailable(&agent, &why)),
        }
    }
    (found, problems)
}

/// Asks each of `agents` to keep `title` as conversation `id`'s name; what
/// each said.
pub(crate) async fn rename(
    inner: &Arc<GatewayInner>,
    user: &User,
    agents: &[String],
    id: &str,
    title: &str,
) -> Vec<Value> {
    let asks = agents.iter().map(|agent| async move {
        let params = RenameParams {
            context_id: id.to_owned(),
            title: title.to_owned(),
        };
        match ask::<Value>(inner, user, agent, sessions::RENAME, params).await {
            Answer::Data(d) => json!({ "agent": agent, "renamed": d["renamed"] == json!(true) }),
            Answer::NotFound | Answer::Unsupported => json!({ "agent": agent, "renamed": false }),
            Answer::Failed(why) => json!({ "agent": agent, "renamed": false, "error": why }),
        }
    });
    futures::future::join_all(asks).await
}

/// Asks each of `agents` to forget conversation `id`; what each said
/// (`had_history: false`: it kept none).
pub(crate) async fn forget(
    inner: &Arc<GatewayInner>,
    user: &User,
    agents: &[String],
    id: &str,
) -> Vec<Value> {
    let asks = agents.iter().map(|agent| async move {
        let params = ContextParams {
            context_id: id.to_owned(),
        };
        match ask::<Value>(inner, user, agent, sessions::DELETE, params).await {
            Answer::Data(d) => {
                json!({ "agent": agent, "forgotten": true, "had_history": d["deleted"] == json!(true) })
            }
            Answer::NotFound | Answer::Unsupported => {
                json!({ "agent": agent, "forgotten": true, "had_history": false })
            }
            Answer::Failed(why) => json!({ "agent": agent, "error": why }),
        }
    });
    futures::future::join_all(asks).await
}
