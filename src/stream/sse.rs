//! Server-sent events framing: split a byte stream into events, read their `data`.

use bytes::{Bytes, BytesMut};
use serde::Serialize;

/// The last event of an OpenAI stream.
pub const SSE_DONE: &[u8] = b"data: [DONE]\n\n";

/// Encodes one `data:` event.
pub fn sse_data<T: Serialize>(value: &T) -> Bytes {
    let mut out = b"data: ".to_vec();
    // Serializing a `Value` or derived struct to a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, value);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// Splits a byte stream into complete events (each ending with a blank line).
#[derive(Debug, Default)]
pub struct SseSplitter {
    buf: BytesMut,
}

impl SseSplitter {
    /// Adds bytes; returns the events they complete, each with its terminating blank line.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Bytes> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        let mut from = 0;
        while let Some(end) = find_event_end(&self.buf, from) {
            out.push(end);
            from = end;
        }
        let mut events = Vec::with_capacity(out.len());
        let mut taken = 0;
        for end in out {
            events.push(self.buf.split_to(end - taken).freeze());
            taken = end;
        }
        events
    }

    /// What is left when the stream ends without a final blank line.
    pub fn finish(&mut self) -> Option<Bytes> {
        if self.buf.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            Some(self.buf.split().freeze())
        }
    }
}

/// Offset just past the first event terminator at or after `from`.
fn find_event_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 1 < buf.len() {
        if buf[i] == b'\n' {
            if buf[i + 1] == b'\n' {
                return Some(i + 2);
            }
            if buf[i + 1] == b'\r' && buf.get(i + 2) == Some(&b'\n') {
                return Some(i + 3);
            }
        }
        i += 1;
    }
    None
}

/// The `data` of an event (several `data:` lines joined by `\n`); `None` if it has none.
pub fn event_data(event: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(event).ok()?;
    let mut data: Option<String> = None;
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(rest) = line.strip_prefix("data:") {
            let rest = rest.strip_prefix(' ').unwrap_or(rest);
            match &mut data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(rest);
                }
                None => data = Some(rest.to_string()),
            }
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_across_chunk_boundaries() {
        let mut s = SseSplitter::default();
        assert!(s.push(b"data: {\"a\"").is_empty());
        let ev = s.push(b":1}\n\ndata: [DONE]\n\n");
        assert_eq!(ev.len(), 2);
        assert_eq!(event_data(&ev[0]).as_deref(), Some("{\"a\":1}"));
        assert_eq!(event_data(&ev[1]).as_deref(), Some("[DONE]"));
        assert!(s.finish().is_none());
    }

    #[test]
    fn crlf_and_multiline_and_comments() {
        let mut s = SseSplitter::default();
        let ev = s.push(b": ping\r\n\r\nevent: x\r\ndata: a\r\ndata: b\r\n\r\n");
        assert_eq!(ev.len(), 2);
        assert_eq!(event_data(&ev[0]), None);
        assert_eq!(event_data(&ev[1]).as_deref(), Some("a\nb"));
        s.push(b"data: tail");
        assert_eq!(s.finish().as_deref(), Some(&b"data: tail"[..]));
    }
}
