//! Conversations in memory, bounded.
//!
//! A memory store lives as long as the agent and every user's every
//! conversation passes through it, so it keeps at most
//! [`MAX_MEMORY_CONVERSATIONS`] conversations *and*
//! [`MAX_MEMORY_CONVERSATION_BYTES`] of sealed data — a count alone would
//! still allow 10,000 × 4 MiB — and drops the least recently saved first.
//! Recency is a save counter, not the clock: two saves in one millisecond
//! still have an order, and a clock step back does not reorder them.
//!
//! Held compactly, since at the row limit the bookkeeping of a short
//! conversation weighs as much as its sealed bytes: the `context_id` is
//! one shared allocation for the map and the recency order, a user's id
//! one allocation for all their conversations, and history and title one
//! boxed slice (the agent's RSS after 10,000 one-turn conversations is a
//! benchmarked target, README "Model loop").

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::conversations::{MAX_MEMORY_CONVERSATION_BYTES, MAX_MEMORY_CONVERSATIONS};
use crate::storage::{ConvMeta, ConvRow, ConvStored, ConvWrite, RetitleRow};

struct MemConv {
    /// Shared with the user's other conversations (see [`Users`]).
    user_id: Arc<str>,
    /// The sealed history followed by the sealed title.
    sealed: Box<[u8]>,
    /// Where the title starts in `sealed`.
    title_at: u32,
    turns: u32,
    created_at: i64,
    updated_at: i64,
    /// When the user named it; such a title survives saves.
    renamed_at: Option<i64>,
    /// Position in [`Conversations::order`].
    seq: u64,
}

impl MemConv {
    fn new(user_id: Arc<str>, history: &[u8], title: &[u8]) -> Self {
        let mut sealed = Vec::with_capacity(history.len() + title.len());
        sealed.extend_from_slice(history);
        sealed.extend_from_slice(title);
        Self {
            user_id,
            sealed: sealed.into_boxed_slice(),
            // A sealed history is at most `MAX_CONVERSATION_BYTES` (4 MiB).
            title_at: u32::try_from(history.len()).unwrap_or(u32::MAX),
            turns: 0,
            created_at: 0,
            updated_at: 0,
            renamed_at: None,
            seq: 0,
        }
    }

    fn history(&self) -> &[u8] {
        &self.sealed[..self.title_at as usize]
    }

    fn title(&self) -> &[u8] {
        &self.sealed[self.title_at as usize..]
    }

    fn size(&self) -> usize {
        self.sealed.len()
    }
}

/// One allocation per user id, shared by that user's conversations; an
/// id leaves when its last conversation does.
#[derive(Default)]
struct Users(HashSet<Arc<str>>);

impl Users {
    fn intern(&mut self, user_id: &str) -> Arc<str> {
        if let Some(id) = self.0.get(user_id) {
            return id.clone();
        }
        let id: Arc<str> = Arc::from(user_id);
        self.0.insert(id.clone());
        id
    }

    /// `user_id` was dropped from a row: forget it if no row holds it.
    fn release(&mut self, user_id: Arc<str>) {
        // Held by the set and by `user_id` only.
        if Arc::strong_count(&user_id) == 2 {
            self.0.remove(&*user_id);
        }
    }
}

/// One agent's conversations (a memory store serves one agent).
pub(crate) struct Conversations {
    /// By `context_id`.
    rows: HashMap<Arc<str>, MemConv>,
    /// `context_id`s by save order, least recently saved first.
    order: BTreeMap<u64, Arc<str>>,
    users: Users,
    next_seq: u64,
    /// Sealed bytes held.
    bytes: usize,
    max_rows: usize,
    max_bytes: usize,
}

impl Default for Conversations {
    fn default() -> Self {
        Self::with_limits(MAX_MEMORY_CONVERSATIONS, MAX_MEMORY_CONVERSATION_BYTES)
    }
}

impl Conversations {
    pub(crate) fn with_limits(max_rows: usize, max_bytes: usize) -> Self {
        Self {
            rows: HashMap::new(),
            order: BTreeMap::new(),
            users: Users::default(),
            next_seq: 0,
            bytes: 0,
            max_rows: max_rows.max(1),
            max_bytes,
        }
    }

    pub(crate) fn get(&self, context_id: &str, cutoff: i64) -> Option<ConvStored> {
        let row = self.rows.get(context_id)?;
        (row.updated_at > cutoff).then(|| ConvStored {
            user_id: row.user_id.to_string(),
            sealed: row.history().to_vec(),
            sealed_title: row.title().to_vec(),
            turns: row.turns,
            created_at: row.created_at,
            updated_at: row.updated_at,
            renamed_at: row.renamed_at,
        })
    }

    pub(crate) fn save(&mut self, row: ConvRow<'_>) -> ConvWrite {
        let live = self
            .rows
            .get(row.context_id)
            .filter(|old| old.updated_at > row.cutoff);
        if let Some(old) = live
            && *old.user_id != *row.user_id
        {
            return ConvWrite::OwnedBy(old.user_id.to_string());
        }
        let user_id = self.users.intern(row.user_id);
        let conv = match live {
            // A title the user gave survives their later saves.
            Some(old) => MemConv {
                created_at: old.created_at,
                renamed_at: old.renamed_at,
                ..MemConv::new(
                    user_id,
                    &row.sealed,
                    match old.renamed_at {
                        Some(_) => old.title(),
                        None => &row.sealed_title,
                    },
                )
            },
            None => MemConv {
                created_at: row.now,
                ..MemConv::new(user_id, &row.sealed, &row.sealed_title)
            },
        };
        self.put(
            row.context_id,
            MemConv {
                turns: row.turns,
                updated_at: row.now,
                ..conv
            },
        );
        ConvWrite::Done
    }

    /// The user's title: on their live conversation, or on a new empty one.
    pub(crate) fn retitle(&mut self, row: RetitleRow<'_>) -> ConvWrite {
        let conv = match self.rows.get(row.context_id) {
            Some(old) if old.updated_at > row.cutoff && *old.user_id != *row.user_id => {
                return ConvWrite::OwnedBy(old.user_id.to_string());
            }
            Some(old) if old.updated_at > row.cutoff => MemConv {
                turns: old.turns,
                created_at: old.created_at,
                updated_at: row.now.max(old.updated_at),
                renamed_at: Some(row.now),
                ..MemConv::new(old.user_id.clone(), old.history(), &row.sealed_title)
            },
            _ => MemConv {
                created_at: row.now,
                updated_at: row.now,
                renamed_at: Some(row.now),
                ..MemConv::new(
                    self.users.intern(row.user_id),
                    &row.empty_sealed,
                    &row.sealed_title,
                )
            },
        };
        self.put(row.context_id, conv);
        ConvWrite::Done
    }

    /// Stores `conv` as the most recently saved, replacing any row of
    /// `context_id`, and evicts past the limits.
    fn put(&mut self, context_id: &str, mut conv: MemConv) {
        let key = match self.rows.remove_entry(context_id) {
            Some((key, old)) => {
                self.order.remove(&old.seq);
                self.bytes -= old.size();
                self.users.release(old.user_id);
                key
            }
            None => Arc::from(context_id),
        };
        conv.seq = self.next_seq;
        self.next_seq += 1;
        self.bytes += conv.size();
        self.order.insert(conv.seq, key.clone());
        self.rows.insert(key, conv);
        self.evict();
    }

    pub(crate) fn delete(&mut self, context_id: &str, user: &str, cutoff: i64) -> ConvWrite {
        match self.rows.get(context_id) {
            Some(row) if *row.user_id == *user => {
                self.remove(context_id);
                ConvWrite::Done
            }
            Some(row) if row.updated_at > cutoff => ConvWrite::OwnedBy(row.user_id.to_string()),
            _ => ConvWrite::Missing,
        }
    }

    pub(crate) fn list(
        &self,
        user: &str,
        cutoff: i64,
        before: Option<i64>,
        limit: usize,
    ) -> Vec<ConvMeta> {
        let mut mine: Vec<(&Arc<str>, &MemConv)> = self
            .rows
            .iter()
            .filter(|(_, row)| *row.user_id == *user && row.updated_at > cutoff)
            .filter(|(_, row)| before.is_none_or(|b| row.updated_at < b))
            .collect();
        mine.sort_by_key(|(_, row)| std::cmp::Reverse(row.seq));
        mine.into_iter()
            .take(limit)
            .map(|(context_id, row)| ConvMeta {
                context_id: context_id.to_string(),
                sealed_title: row.title().to_vec(),
                turns: row.turns,
                created_at: row.created_at,
                updated_at: row.updated_at,
                renamed_at: row.renamed_at,
            })
            .collect()
    }

    /// A full pass rather than a walk of `order` from the oldest: it is a
    /// few thousand entries a minute, and stays right if the clock stepped.
    pub(crate) fn purge(&mut self, cutoff: i64) -> u64 {
        let expired: Vec<Arc<str>> = self
            .rows
            .iter()
            .filter(|(_, row)| row.updated_at <= cutoff)
            .map(|(context_id, _)| context_id.clone())
            .collect();
        for context_id in &expired {
            self.remove(context_id);
        }
        expired.len() as u64
    }

    fn remove(&mut self, context_id: &str) {
        if let Some(old) = self.rows.remove(context_id) {
            self.order.remove(&old.seq);
            self.bytes -= old.size();
            self.users.release(old.user_id);
        }
    }

    /// Drops the least recently saved until both limits hold. The row just
    /// saved is the most recent, so it is never the one dropped.
    fn evict(&mut self) {
        let mut evicted = 0usize;
        while (self.rows.len() > self.max_rows || self.bytes > self.max_bytes)
            && self.rows.len() > 1
        {
            let Some((_, context_id)) = self.order.pop_first() else {
                break;
            };
            if let Some(old) = self.rows.remove(&context_id) {
                self.bytes -= old.size();
                self.users.release(old.user_id);
                evicted += 1;
            }
        }
        if evicted > 0 {
            tracing::debug!(
                evicted,
                kept = self.rows.len(),
                "memory conversation store full; least recently saved conversations dropped"
            );
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.rows.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(context_id: &'a str, user: &'a str, size: usize, now: i64) -> ConvRow<'a> {
        ConvRow {
            agent_id: "agent-a",
            user_id: user,
            context_id,
            sealed: vec![0; size],
            sealed_title: vec![0; 1],
            turns: 1,
            now,
            cutoff: now - 1000,
        }
    }

    #[test]
    fn the_least_recently_saved_go_first_when_full() {
        let mut convs = Conversations::with_limits(3, usize::MAX);
        for (i, ctx) in ["c1", "c2", "c3"].into_iter().enumerate() {
            assert_eq!(convs.save(row(ctx, "alice", 10, i as i64)), ConvWrite::Done);
        }
        // c1 is saved again: c2 is now the least recently saved.
        convs.save(row("c1", "alice", 10, 3));
        convs.save(row("c4", "alice", 10, 4));
        assert_eq!(convs.len(), 3);
        assert!(convs.get("c2", -1).is_none(), "c2 evicted");
        for ctx in ["c1", "c3", "c4"] {
            assert!(convs.get(ctx, -1).is_some(), "{ctx} kept");
        }
    }

    #[test]
    fn sealed_bytes_are_bounded_too() {
        let mut convs = Conversations::with_limits(100, 250);
        for (i, ctx) in ["c1", "c2", "c3"].into_iter().enumerate() {
            convs.save(row(ctx, "alice", 99, i as i64));
        }
        // 3 × 100 bytes > 250: c1 went.
        assert_eq!(convs.len(), 2);
        assert!(convs.get("c1", -1).is_none());
        assert_eq!(convs.bytes, 200);
        // Replacing a row accounts for the old one leaving.
        convs.save(row("c3", "alice", 9, 5));
        assert_eq!((convs.len(), convs.bytes), (2, 110));
    }

    #[test]
    fn purge_drops_what_was_last_saved_at_or_before_the_cutoff() {
        let mut convs = Conversations::with_limits(100, usize::MAX);
        convs.save(row("old", "alice", 10, 100));
        convs.save(row("edge", "alice", 10, 200));
        convs.save(row("new", "alice", 10, 201));
        assert_eq!(convs.purge(200), 2);
        assert_eq!(convs.len(), 1);
        assert!(convs.get("new", 0).is_some());
        assert_eq!((convs.bytes, convs.order.len()), (11, 1));
    }

    #[test]
    fn one_allocation_per_user_id_released_with_their_last_conversation() {
        let mut convs = Conversations::with_limits(2, usize::MAX);
        convs.save(row("a1", "alice", 10, 1));
        convs.save(row("a2", "alice", 10, 2));
        let ids: Vec<*const u8> = convs.rows.values().map(|r| r.user_id.as_ptr()).collect();
        assert_eq!(ids[0], ids[1], "alice's id is shared");
        assert_eq!(convs.users.0.len(), 1);
        // Bob's two saves evict both of alice's: her id goes with them.
        convs.save(row("b1", "bob", 10, 3));
        convs.save(row("b2", "bob", 10, 4));
        assert_eq!(convs.users.0.len(), 1);
        assert!(convs.users.0.contains("bob"));
        // A refused save (another user's live context) interns nothing.
        assert_eq!(
            convs.save(row("b1", "carol", 10, 5)),
            ConvWrite::OwnedBy("bob".into())
        );
        assert_eq!(convs.users.0.len(), 1);
        for ctx in ["b1", "b2"] {
            assert_eq!(convs.delete(ctx, "bob", 0), ConvWrite::Done);
        }
        assert!(convs.users.0.is_empty());
        assert_eq!(
            (convs.rows.len(), convs.order.len(), convs.bytes),
            (0, 0, 0)
        );
    }

    fn title_of(convs: &Conversations, ctx: &str) -> Vec<u8> {
        convs.get(ctx, -1).expect("kept").sealed_title
    }

    #[test]
    fn a_title_the_user_gave_survives_later_saves() {
        let mut convs = Conversations::with_limits(100, usize::MAX);
        convs.save(row("ctx", "alice", 10, 0));
        let named = RetitleRow {
            agent_id: "agent-a",
            user_id: "alice",
            context_id: "ctx",
            sealed_title: vec![7; 3],
            empty_sealed: vec![0; 2],
            now: 10,
            cutoff: -1000,
        };
        assert_eq!(convs.retitle(named), ConvWrite::Done);
        assert_eq!(
            convs.get("ctx", -1).unwrap().sealed.len(),
            10,
            "history kept"
        );
        convs.save(row("ctx", "alice", 12, 20));
        assert_eq!(title_of(&convs, "ctx"), vec![7; 3]);
        assert_eq!(convs.list("alice", -1, None, 10)[0].renamed_at, Some(10));
        // Bob cannot name alice's; naming an unknown context creates it empty.
        let bobs = |ctx| RetitleRow {
            agent_id: "agent-a",
            user_id: "bob",
            context_id: ctx,
            sealed_title: vec![9; 3],
            empty_sealed: vec![0; 2],
            now: 30,
            cutoff: -1000,
        };
        assert_eq!(
            convs.retitle(bobs("ctx")),
            ConvWrite::OwnedBy("alice".into())
        );
        assert_eq!(title_of(&convs, "ctx"), vec![7; 3]);
        assert_eq!(convs.retitle(bobs("new")), ConvWrite::Done);
        let new = &convs.list("bob", -1, None, 10)[0];
        assert_eq!((new.turns, new.renamed_at), (0, Some(30)));
        assert_eq!(convs.bytes, 12 + 3 + 2 + 3);
    }

    #[test]
    fn an_expired_conversation_of_another_user_is_replaced() {
        let mut convs = Conversations::with_limits(100, usize::MAX);
        convs.save(row("ctx", "alice", 10, 0));
        assert_eq!(
            convs.save(row("ctx", "bob", 10, 500)),
            ConvWrite::OwnedBy("alice".into()),
            "alice's is live"
        );
        assert_eq!(convs.save(row("ctx", "bob", 10, 5000)), ConvWrite::Done);
        assert_eq!(
            convs.get("ctx", 0).map(|c| c.user_id).as_deref(),
            Some("bob")
        );
    }
}
