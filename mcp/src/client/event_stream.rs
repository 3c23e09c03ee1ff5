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
    /// Guard against a server that never ends a line.
    max_line: usize,
}

/// A single line longer than this fails the stream (protects memory).
pub const DEFAULT_MAX_LINE: usize = 16 * 1024 * 1024;

/// The stream sent a line longer than the parser accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineTooLong;

impl EventParser {
    pub fn new() -> Self {
        Self {
            max_line: DEFAULT_MAX_LINE,
            ..Self::default()
        }
    }

    /// Feeds bytes; returns the events they completed, in order.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<Event>, LineTooLong> {
        let mut out = Vec::new();
        for &b in chunk {
            match b {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = b == b'\r';
                    let line = std::mem::take(&mut self.line);
                    if let Some(event) = self.line_done(&String::from_utf8_lossy(&line)) {
                        out.push(event);
                    }
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() >= self.max_line.max(1) {
                        return Err(LineTooLong);
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(out)
    }

    fn line_done(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None; // comment / keep-alive
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
        None
    }

    fn dispatch(&mut self) -> Option<Event> {
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
