//! The web page's conversations: per user, a list of chats, each with its
//! turns (what the user asked, what the agent answered, which tools ran).
//!
//! Why here and not at the agent: agents keep each conversation's model
//! history in their session store, keyed by (user, contextId), but A2A has
//! no method to list or delete a user's sessions, and one chat may talk to
//! several agents. Until agents offer such a method, the gateway keeps
//! what the page shows, in memory (lost on restart), and a conversation's
//! id is the A2A `contextId` its tasks are sent with, so the agent's own
//! history follows the same conversation. Deleting one here also asks its
//! agents to delete their history of it (`amesh/sessions/delete`).
//!
//! Bounded: conversations per user (least recently used dropped), turns
//! per conversation (oldest dropped), text per turn (cut), and a total of
//! bytes and conversations for all users together (least recently used
//! dropped, whoever it belongs to).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

/// Turns kept per conversation.
pub(crate) const MAX_TURNS: usize = 100;
/// Characters of a prompt or answer kept per turn.
pub(crate) const MAX_TEXT_CHARS: usize = 32 * 1024;
/// Tool uses listed per turn.
const MAX_TOOLS: usize = 32;
/// Characters of a title.
const MAX_TITLE_CHARS: usize = 120;
/// Bytes a conversation or turn counts for beyond its text.
const OVERHEAD: usize = 256;

#[derive(Clone, Copy, Debug)]
pub(crate) struct ConversationLimits {
    pub per_user: usize,
    pub max_total: usize,
    pub max_bytes: usize,
}

/// One tool call of a turn, for the page's tool activity line.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct ToolUse {
    pub tool: String,
    pub server: String,
    pub duration_ms: Option<u64>,
    pub ok: Option<bool>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Turn {
    pub task_id: String,
    pub agent: String,
    pub prompt: String,
    /// The answer's text (or, for a failed or canceled task, why).
    pub answer: Option<String>,
    /// The task's last known A2A state.
    pub state: String,
    pub tools: Vec<ToolUse>,
}

impl Turn {
    fn bytes(&self) -> usize {
        OVERHEAD
            + self.prompt.len()
            + self.answer.as_ref().map_or(0, String::len)
            + self
                .tools
                .iter()
                .map(|t| t.tool.len() + t.server.len() + 32)
                .sum::<usize>()
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Conversation {
    pub id: String,
    pub title: String,
    pub agent: String,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub turns: VecDeque<Turn>,
    #[serde(skip)]
    touched: u64,
}

impl Conversation {
    fn bytes(&self) -> usize {
        OVERHEAD
            + self.id.len()
            + self.title.len()
            + self.agent.len()
            + self.turns.iter().map(Turn::bytes).sum::<usize>()
    }
}

/// A conversation in the list (no turns).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Summary {
    pub id: String,
    pub title: String,
    pub agent: String,
    pub updated_ms: u64,
    pub turns: usize,
}

#[derive(Default)]
struct Inner {
    users: HashMap<String, HashMap<String, Conversation>>,
    /// Logical clock for least-recently-used eviction.
    clock: u64,
    count: usize,
    bytes: usize,
}

impl Inner {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn remove(&mut self, user: &str, id: &str) -> Option<Conversation> {
        let convs = self.users.get_mut(user)?;
        let conv = convs.remove(id)?;
        if convs.is_empty() {
            self.users.remove(user);
        }
        self.count -= 1;
        self.bytes = self.bytes.saturating_sub(conv.bytes());
        Some(conv)
    }

    /// The least recently used conversation, of `user` or of anyone.
    fn oldest(&self, user: Option<&str>) -> Option<(String, String)> {
        self.users
            .iter()
            .filter(|(u, _)| user.is_none_or(|x| x == u.as_str()))
            .flat_map(|(u, convs)| convs.values().map(move |c| (c.touched, u, &c.id)))
            .min_by_key(|(t, _, _)| *t)
            .map(|(_, u, id)| (u.clone(), id.clone()))
    }
}

pub(crate) struct Conversations {
    limits: ConversationLimits,
    inner: Mutex<Inner>,
}

/// `text`, cut to `max` characters (marked).
fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}… [cut]", &text[..i]),
        None => text.to_owned(),
    }
}

impl Conversations {
    pub(crate) fn new(limits: ConversationLimits) -> Self {
        Conversations {
            limits,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new, empty conversation of `user` with `agent`.
    pub(crate) fn create(&self, user: &str, agent: &str, title: Option<&str>) -> Summary {
        let now = amesh_trust::now_unix_millis();
        let mut inner = self.lock();
        let touched = inner.tick();
        let conv = Conversation {
            id: format!("conv-{}", uuid::Uuid::new_v4().simple()),
            title: cut(title.unwrap_or("New conversation"), MAX_TITLE_CHARS),
            agent: agent.to_owned(),
            created_ms: now,
            updated_ms: now,
            turns: VecDeque::new(),
            touched,
        };
        let summary = summary(&conv);
        inner.bytes += conv.bytes();
        inner.count += 1;
        inner
            .users
            .entry(user.to_owned())
            .or_default()
            .insert(conv.id.clone(), conv);
        self.trim(&mut inner, user);
        summary
    }

    /// Drops least recently used conversations past the limits.
    fn trim(&self, inner: &mut Inner, user: &str) {
        while inner.users.get(user).map_or(0, HashMap::len) > self.limits.per_user {
            let Some((u, id)) = inner.oldest(Some(user)) else {
                break;
            };
            inner.remove(&u, &id);
        }
        while inner.count > self.limits.max_total || inner.bytes > self.limits.max_bytes {
            let Some((u, id)) = inner.oldest(None) else {
                break;
            };
            inner.remove(&u, &id);
        }
    }

    /// `user`'s conversations, most recently updated first.
    pub(crate) fn list(&self, user: &str) -> Vec<Summary> {
        let inner = self.lock();
        let mut list: Vec<Summary> = inner
            .users
            .get(user)
            .map(|c| c.values().map(summary).collect())
            .unwrap_or_default();
        list.sort_by(|a, b| b.updated_ms.cmp(&a.updated_ms).then(b.id.cmp(&a.id)));
        list
    }

    pub(crate) fn get(&self, user: &str, id: &str) -> Option<Conversation> {
        let mut inner = self.lock();
        let touched = inner.tick();
        let conv = inner.users.get_mut(user)?.get_mut(id)?;
        conv.touched = touched;
        Some(conv.clone())
    }

    pub(crate) fn rename(&self, user: &str, id: &str, title: &str) -> Option<Summary> {
        let mut inner = self.lock();
        let conv = inner.users.get_mut(user)?.get_mut(id)?;
        let before = conv.bytes();
        conv.title = cut(title, MAX_TITLE_CHARS);
        let (after, s) = (conv.bytes(), summary(conv));
        inner.bytes = (inner.bytes + after).saturating_sub(before);
        Some(s)
    }

    pub(crate) fn delete(&self, user: &str, id: &str) -> bool {
        self.lock().remove(user, id).is_some()
    }

    /// Whether `id` is a conversation of `user`.
    pub(crate) fn owns(&self, user: &str, id: &str) -> bool {
        self.lock()
            .users
            .get(user)
            .is_some_and(|c| c.contains_key(id))
    }

    /// Adds the turn of a new task; the first one also names an untitled
    /// conversation after its prompt.
    pub(crate) fn start_turn(
        &self,
        user: &str,
        id: &str,
        task_id: &str,
        agent: &str,
        prompt: &str,
    ) {
        let now = amesh_trust::now_unix_millis();
        let mut inner = self.lock();
        let touched = inner.tick();
        let Some(conv) = inner.users.get_mut(user).and_then(|c| c.get_mut(id)) else {
            return;
        };
        let before = conv.bytes();
        if conv.turns.is_empty() && conv.title == "New conversation" {
            let line = prompt.lines().next().unwrap_or_default().trim();
            if !line.is_empty() {
                conv.title = cut(line, 60);
            }
        }
        conv.turns.push_back(Turn {
            task_id: task_id.to_owned(),
            agent: agent.to_owned(),
            prompt: cut(prompt, MAX_TEXT_CHARS),
            answer: None,
            state: "submitted".to_owned(),
            tools: Vec::new(),
        });
        while conv.turns.len() > MAX_TURNS {
            conv.turns.pop_front();
        }
        conv.agent = agent.to_owned();
        conv.updated_ms = now;
        conv.touched = touched;
        let after = conv.bytes();
        inner.bytes = (inner.bytes + after).saturating_sub(before);
        self.trim(&mut inner, user);
    }

    /// Changes the turn of `task_id` (state, answer, tools).
    pub(crate) fn update_turn(
        &self,
        user: &str,
        id: &str,
        task_id: &str,
        change: impl FnOnce(&mut Turn),
    ) {
        let mut inner = self.lock();
        let Some(conv) = inner.users.get_mut(user).and_then(|c| c.get_mut(id)) else {
            return;
        };
        let before = conv.bytes();
        let Some(turn) = conv.turns.iter_mut().rev().find(|t| t.task_id == task_id) else {
            return;
        };
        change(turn);
        if let Some(answer) = &turn.answer
            && answer.chars().count() > MAX_TEXT_CHARS
        {
            turn.answer = Some(cut(answer, MAX_TEXT_CHARS));
        }
        turn.tools.truncate(MAX_TOOLS);
        conv.updated_ms = amesh_trust::now_unix_millis();
        let after = conv.bytes();
        inner.bytes = (inner.bytes + after).saturating_sub(before);
        self.trim(&mut inner, user);
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().count
    }

    pub(crate) fn approx_bytes(&self) -> usize {
        self.lock().bytes
    }
}

impl Turn {
    /// Notes a tool call starting or ending (`tool_call` / `tool_result`).
    pub(crate) fn tool(&mut self, data: &serde_json::Value) {
        let text = |k: &str| {
            data.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_owned()
        };
        let (tool, server) = (text("tool"), text("server"));
        let ended = data.get("type").and_then(|v| v.as_str()) == Some("tool_result");
        if ended
            && let Some(open) = self
                .tools
                .iter_mut()
                .rev()
                .find(|t| t.tool == tool && t.ok.is_none())
        {
            open.duration_ms = data.get("duration_ms").and_then(|v| v.as_u64());
            open.ok = data.get("ok").and_then(|v| v.as_bool());
            return;
        }
        if self.tools.len() < MAX_TOOLS {
            self.tools.push(ToolUse {
                tool: cut(&tool, 200),
                server: cut(&server, 200),
                duration_ms: None,
                ok: None,
            });
        }
    }
}

fn summary(c: &Conversation) -> Summary {
    Summary {
        id: c.id.clone(),
        title: c.title.clone(),
        agent: c.agent.clone(),
        updated_ms: c.updated_ms,
        turns: c.turns.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convs(per_user: usize, max_total: usize, max_bytes: usize) -> Conversations {
        Conversations::new(ConversationLimits {
            per_user,
            max_total,
            max_bytes,
        })
    }

    #[test]
    fn users_see_only_their_own_conversations() {
        let c = convs(10, 100, 1 << 20);
        let a = c.create("alice", "echo", None);
        assert!(c.get("bob", &a.id).is_none());
        assert!(!c.delete("bob", &a.id));
        assert!(c.rename("bob", &a.id, "x").is_none());
        assert!(c.list("bob").is_empty());
        assert_eq!(c.list("alice").len(), 1);
    }

    #[test]
    fn first_prompt_names_the_conversation_and_turns_record_the_answer() {
        let c = convs(10, 100, 1 << 20);
        let a = c.create("alice", "echo", None);
        c.start_turn("alice", &a.id, "t1", "echo", "What time is it?\nmore");
        c.update_turn("alice", &a.id, "t1", |t| {
            t.tool(&serde_json::json!({"type": "tool_call", "tool": "time", "server": "builtin"}));
            t.tool(&serde_json::json!({"type": "tool_result", "tool": "time", "server": "builtin", "duration_ms": 3, "ok": true}));
            t.state = "completed".into();
            t.answer = Some("noon".into());
        });
        let got = c.get("alice", &a.id).unwrap();
        assert_eq!(got.title, "What time is it?");
        assert_eq!(got.turns[0].answer.as_deref(), Some("noon"));
        assert_eq!(got.turns[0].tools.len(), 1);
        assert_eq!(got.turns[0].tools[0].duration_ms, Some(3));
        c.rename("alice", &a.id, "Clock");
        assert_eq!(c.list("alice")[0].title, "Clock");
        assert!(c.delete("alice", &a.id));
        assert_eq!(c.len(), 0);
        assert_eq!(c.approx_bytes(), 0);
    }

    #[test]
    fn conversations_and_turns_are_bounded() {
        let c = convs(3, 5, 1 << 20);
        let first = c.create("alice", "echo", None);
        for _ in 0..3 {
            c.create("alice", "echo", None);
        }
        assert_eq!(c.list("alice").len(), 3);
        assert!(
            c.get("alice", &first.id).is_none(),
            "least recently used goes"
        );
        for _ in 0..3 {
            c.create("bob", "echo", None);
        }
        assert_eq!(c.len(), 5);
        let b = c.create("bob", "echo", None);
        for i in 0..(MAX_TURNS + 5) {
            c.start_turn("bob", &b.id, &format!("t{i}"), "echo", "hi");
        }
        assert_eq!(c.get("bob", &b.id).unwrap().turns.len(), MAX_TURNS);
        let long = "x".repeat(MAX_TEXT_CHARS * 2);
        c.start_turn("bob", &b.id, "long", "echo", &long);
        let turns = c.get("bob", &b.id).unwrap().turns;
        assert!(turns.back().unwrap().prompt.len() < MAX_TEXT_CHARS + 20);
    }

    #[test]
    fn the_byte_budget_drops_the_least_recently_used() {
        let c = convs(100, 100, 8 * 1024);
        let old = c.create("alice", "echo", None);
        let new = c.create("bob", "echo", None);
        c.start_turn("bob", &new.id, "t", "echo", &"y".repeat(7400));
        assert!(c.get("alice", &old.id).is_none());
        assert!(c.get("bob", &new.id).is_some());
        assert!(c.approx_bytes() <= 8 * 1024);
    }
}
