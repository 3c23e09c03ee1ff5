//! The web page's conversations: per user, a list of chats, each with its
//! turns (what the user asked, what the agent answered, which tools ran).
//!
//! Where they live: with the agents. Each agent keeps every conversation's
//! model history in its session store, per (agent, user, contextId), and
//! answers `amesh/sessions/*` for the verified user (`agent_sessions.rs`
//! asks). A conversation's id is the A2A `contextId` its tasks are sent
//! with, so the agent's history is the same conversation. So is its name:
//! a rename is stored at the agents too, in the conversation's row of
//! their session store (SQL column `renamed_at`), because the gateway has
//! no database and a name the user chose must outlive a gateway restart;
//! until renamed, the title is the first question.
//!
//! This module is the gateway's cache of them, in memory: the list merges
//! it with what the agents answer (`conversation_routes.rs`), and a
//! conversation it does not hold — after a restart, or dropped by its
//! bounds — is read from the agents and adopted ([`Conversations::adopt`]).
//! It holds what the agents do not: a turn still running (its task id and
//! state, for the page to follow its events), tool durations, and a new
//! conversation before its first answer.
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

/// A conversation read back from the agents, for [`Conversations::adopt`].
pub(crate) struct Restored {
    pub id: String,
    pub title: String,
    pub agent: String,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub turns: Vec<Turn>,
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

    /// Keeps `restored` as `user`'s (within the bounds: the newest turns,
    /// texts cut) and answers it as kept; one already held wins (it may
    /// have a turn running).
    pub(crate) fn adopt(&self, user: &str, restored: Restored) -> Conversation {
        let mut inner = self.lock();
        let touched = inner.tick();
        if let Some(held) = inner
            .users
            .get_mut(user)
            .and_then(|c| c.get_mut(&restored.id))
        {
            held.touched = touched;
            return held.clone();
        }
        let skip = restored.turns.len().saturating_sub(MAX_TURNS);
        let turns = restored
            .turns
            .into_iter()
            .skip(skip)
            .map(|mut t| {
                t.prompt = cut(&t.prompt, MAX_TEXT_CHARS);
                t.answer = t.answer.map(|a| cut(&a, MAX_TEXT_CHARS));
                t.tools.truncate(MAX_TOOLS);
                t
            })
            .collect();
        let conv = Conversation {
            id: restored.id,
            title: cut(&restored.title, MAX_TITLE_CHARS),
            agent: restored.agent,
            created_ms: restored.created_ms,
            updated_ms: restored.updated_ms,
            turns,
            touched,
        };
        inner.bytes += conv.bytes();
        inner.count += 1;
        inner
            .users
            .entry(user.to_owned())
            .or_default()
            .insert(conv.id.clone(), conv.clone());
        self.trim(&mut inner, user);
        conv
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
    fn an_adopted_conversation_is_bounded_and_a_held_one_wins() {
        let c = convs(10, 100, 1 << 23);
        let turn = |i: usize| Turn {
            task_id: String::new(),
            agent: "echo".into(),
            prompt: format!("q{i}"),
            answer: Some("x".repeat(MAX_TEXT_CHARS + 10)),
            state: "completed".into(),
            tools: Vec::new(),
        };
        let restored = |id: &str| Restored {
            id: id.into(),
            title: "From the agent".into(),
            agent: "echo".into(),
            created_ms: 1,
            updated_ms: 2,
            turns: (0..MAX_TURNS + 2).map(turn).collect(),
        };
        let got = c.adopt("alice", restored("ctx"));
        assert_eq!(got.turns.len(), MAX_TURNS);
        assert_eq!(got.turns[0].prompt, "q2", "the newest turns are kept");
        assert!(got.turns[0].answer.as_ref().unwrap().ends_with("[cut]"));
        assert_eq!(c.list("alice")[0].title, "From the agent");
        assert!(c.get("bob", "ctx").is_none());
        c.rename("alice", "ctx", "Mine");
        assert_eq!(c.adopt("alice", restored("ctx")).title, "Mine");
        assert_eq!(c.len(), 1);
        assert!(c.approx_bytes() >= MAX_TURNS * MAX_TEXT_CHARS);
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
