//! A `text/event-stream` parser (WHATWG HTML §9.2.6), just what MCP needs.
//!
//! Both transports read event streams (Streamable HTTP answers a POST with
//! one; legacy SSE lives on one), so the parsing is shared here. It is
//! incremental: bytes are pushed as they arrive and complete events come
//! out, so a response is acted on without waiting for the stream to end.

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Event {
    /// `event:` field; `message` when absent.
    pub event: String,
    /// `data:` lines joined with `\n`.
    pub data: String,
    /// `id:` field, if any.
    pub id: Option<String>,
}

/// Incremental parser; feed it chunks with [`EventParser::push`].
#[derive(Debug, Default)]
pub struct EventParser {
    /// Bytes of an unfinished line (a chunk may split a line, or a UTF-8
    /// character, anywhere).
    line: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
    /// A CR ended the last line; a following LF belongs to it.
    after_cr: bool,
    /// Guard against a server that never ends a line, or never ends an
    /// event (`data:` lines accumulate until a blank line): the unfinished
    /// line and the event's fields together may hold at most this.
    max_event: usize,
    /// Bytes held by `event`, `data` and `id`.
    held: usize,
}

/// An event (or a line) larger than this fails the stream. A legacy SSE
/// stream lives as long as its session, so without a bound on one event a
/// server that keeps sending `data:` lines without the blank line that
/// ends the event would grow the agent's memory without end.
pub const DEFAULT_MAX_EVENT: usize = 16 * 1024 * 1024;

/// The stream sent an event (or a line) larger than the parser accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("event stream event larger than {limit} bytes")]
pub struct EventTooLarge {
    pub limit: usize,
}

impl EventParser {
    pub fn new() -> Self {
        Self::with_limit(DEFAULT_MAX_EVENT)
    }

    /// A parser refusing events (and lines) larger than `max_event` bytes.
    pub fn with_limit(max_event: usize) -> Self {
        Self {
            max_event: max_event.max(1),
            ..Self::default()
        }
    }

    /// Feeds bytes; returns the events they completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, EventTooLarge> {
        let mut out = Vec::new();
        for &b in chunk {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.line_done(&String::from_utf8_lossy(&line))? {
                        out.push(event);
                    }
                }
                _ => {
                    self.after_cr = false;
                    if self.held + self.line.len() >= self.max_event {
                        return Err(self.too_large());
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(out)
    }

    fn too_large(&self) -> EventTooLarge {
        EventTooLarge {
            limit: self.max_event,
        }
    }

    fn line_done(&mut self, line: &str) -> Result<Option<Event>, EventTooLarge> {
        if line.is_empty() {
            return Ok(self.dispatch());
        }
        if line.starts_with(':') {
            return Ok(None); // comment / keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {} // `retry` and unknown fields: nothing for us to do
        }
        self.held = [&self.event, &self.data, &self.id]
            .iter()
            .map(|f| f.as_ref().map_or(0, String::len))
            .sum();
        if self.held > self.max_event {
            return Err(self.too_large());
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> Option<Event> {
        self.held = self.id.as_ref().map_or(0, String::len);
        let event = self.event.take();
        let data = self.data.take()?;
        Some(Event {
            event: event
                .filter(|e| !e.is_empty())
                .unwrap_or_else(|| "message".into()),
            data,
            id: self.id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_and_line_endings() {
        let mut p = EventParser::new();
        let mut got = p.push(b"event: endpoint\r\ndata: /messages?s").unwrap();
        assert!(got.is_empty());
        got.extend(
            p.push(b"ession_id=1\r\n\r\n: ping\n\ndata: {\"a\":\ndata: 1}\n")
                .unwrap(),
        );
        got.extend(p.push(b"\n").unwrap());
        assert_eq!(
            got,
            vec![
                Event {
                    event: "endpoint".into(),
                    data: "/messages?session_id=1".into(),
                    id: None
                },
                Event {
                    event: "message".into(),
                    data: "{\"a\":\n1}".into(),
                    id: None
                },
            ]
        );
    }

    #[test]
    fn an_event_that_never_ends_is_refused_at_the_limit() {
        let mut p = EventParser::with_limit(1000);
        // Short lines, but no blank line ending the event.
        let mut failed = None;
        for i in 0..100 {
            if let Err(e) = p.push(b"data: 0123456789012345678901234567890123456789\n") {
                failed = Some((i, e));
                break;
            }
        }
        let (at, e) = failed.expect("refused");
        assert!(at < 30, "refused only after {at} lines");
        assert_eq!(e.to_string(), "event stream event larger than 1000 bytes");
    }

    #[test]
    fn events_under_the_limit_pass_one_after_another() {
        let mut p = EventParser::with_limit(100);
        for _ in 0..50 {
            let got = p
                .push(b"id: 7\ndata: 0123456789012345678901234567890\n\n")
                .unwrap();
            assert_eq!(got.len(), 1);
        }
        // One line alone over the limit fails too.
        assert!(p.push(&[b'x'; 200]).is_err());
    }

    #[test]
    fn event_without_data_is_not_dispatched() {
        let mut p = EventParser::new();
        assert!(p.push(b"event: priming\nid: 7\n\n").unwrap().is_empty());
        let got = p.push(b"data:x\n\n").unwrap();
        assert_eq!(got[0].id.as_deref(), Some("7"));
        assert_eq!(got[0].event, "message");
    }

    #[test]
    fn multibyte_character_split_across_chunks_survives() {
        let mut p = EventParser::new();
        let bytes = "data: é\n\n".as_bytes();
        let mut got = p.push(&bytes[..7]).unwrap();
        got.extend(p.push(&bytes[7..]).unwrap());
        assert_eq!(got[0].data, "é");
    }
}
