//! Restoring placeholders in a streamed answer, where a placeholder may be split across deltas.
//!
//! Only a trailing fragment that is a strict prefix of a placeholder this request issued
//! (`[EMA`, `[EMAIL_1`) is held back; anything else goes out at once, so `[see note]` is not
//! delayed and the holdback never exceeds the longest placeholder.

use super::mask::{Masker, Table};

/// Restores placeholders across the deltas of one streamed text (one choice's content, or one
/// tool call's arguments).
#[derive(Debug, Clone)]
pub struct StreamRestorer {
    table: Table,
    json_escape: bool,
    pending: String,
}

impl StreamRestorer {
    /// A restorer for the placeholders `masker` issued, for plain text (message content).
    pub fn new(masker: &Masker) -> StreamRestorer {
        StreamRestorer {
            table: masker.table().clone(),
            json_escape: false,
            pending: String::new(),
        }
    }

    /// A restorer for streamed tool call arguments: originals are escaped as inside a JSON
    /// string, so the arguments stay valid JSON.
    pub fn for_json(masker: &Masker) -> StreamRestorer {
        StreamRestorer {
            json_escape: true,
            ..StreamRestorer::new(masker)
        }
    }

    /// Adds a delta; returns the restored text that is safe to emit now (possibly empty).
    pub fn push(&mut self, delta: &str) -> String {
        if self.table.is_empty() {
            return delta.to_string();
        }
        self.pending.push_str(delta);
        // Only the suffix from the last '[' can be an unfinished placeholder: any earlier '['
        // is followed by another '[', which no placeholder contains.
        let keep_from = match self.pending.rfind('[') {
            Some(i) if self.table.is_partial(self.pending.get(i..).unwrap_or("")) => i,
            _ => self.pending.len(),
        };
        let held = self.pending.split_off(keep_from);
        let ready = std::mem::replace(&mut self.pending, held);
        self.table.restore(&ready, self.json_escape)
    }

    /// Flushes what is held back (at the end of the stream or before a non-text event).
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.pending);
        self.table.restore(&rest, self.json_escape)
    }

    /// Bytes currently held back.
    pub fn held(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::pii::Scanner;

    fn masker() -> Masker {
        let s = Scanner::new(&[]).unwrap();
        let mut m = Masker::new();
        let masked = m.mask(
            &s,
            "a@example.com b@example.com 555-123-4567 4111111111111111 10.1.2.3",
        );
        assert_eq!(masked, "[EMAIL_1] [EMAIL_2] [PHONE_1] [CARD_1] [IP_1]");
        m
    }

    /// Feeds `chunks` and returns the concatenated output, checking the holdback bound.
    fn run(r: &mut StreamRestorer, chunks: &[&str]) -> String {
        let mut out = String::new();
        for c in chunks {
            out.push_str(&r.push(c));
            assert!(r.held() < "[EMAIL_1]".len(), "held {}", r.held());
        }
        out.push_str(&r.finish());
        out
    }

    fn char_splits(text: &str) -> Vec<usize> {
        (0..=text.len())
            .filter(|i| text.is_char_boundary(*i))
            .collect()
    }

    #[test]
    fn every_single_split_restores() {
        let m = masker();
        let text =
            "Dear [EMAIL_1], your card [CARD_1] (ip [IP_1]) — call [PHONE_1] [see note] [EMAIL_2]";
        let want = m.restore(text);
        assert!(want.contains("a@example.com") && want.contains("[see note]"));
        for i in char_splits(text) {
            let mut r = StreamRestorer::new(&m);
            let got = run(&mut r, &[&text[..i], &text[i..]]);
            assert_eq!(got, want, "split at {i}");
        }
    }

    #[test]
    fn every_double_split_restores() {
        let m = masker();
        let text = "x[EMAIL_1][EMAIL_2]y[IP_1";
        let want = m.restore(text);
        assert_eq!(want, "xa@example.comb@example.comy[IP_1");
        let splits = char_splits(text);
        for &i in &splits {
            for &j in splits.iter().filter(|j| **j >= i) {
                let mut r = StreamRestorer::new(&m);
                let got = run(&mut r, &[&text[..i], &text[i..j], &text[j..]]);
                assert_eq!(got, want, "splits at {i}, {j}");
            }
        }
    }

    #[test]
    fn char_by_char() {
        let m = masker();
        let text = "[[EMAIL_1]] [PHONE_1][CARD_1]. [EMAIL_9] [EMAIL_1";
        let chunks: Vec<String> = text.chars().map(String::from).collect();
        let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
        let mut r = StreamRestorer::new(&m);
        assert_eq!(run(&mut r, &chunks), m.restore(text));
    }

    #[test]
    fn lookalikes_are_not_delayed() {
        let m = masker();
        let mut r = StreamRestorer::new(&m);
        assert_eq!(r.push("see [note"), "see [note");
        assert_eq!(r.push("] and [x"), "] and [x");
        // A real prefix is held, then released once it can no longer be a placeholder.
        assert_eq!(r.push("[EMA"), "");
        assert_eq!(r.held(), 4);
        assert_eq!(r.push("X]"), "[EMAX]");
        assert_eq!(r.push("[EMAIL_1"), "");
        assert_eq!(r.push("0]"), "[EMAIL_10]");
        assert_eq!(r.push("[IP"), "");
        assert_eq!(r.finish(), "[IP");
        assert_eq!(r.finish(), "");
    }

    #[test]
    fn nothing_masked_passes_through() {
        let m = Masker::new();
        let mut r = StreamRestorer::new(&m);
        assert_eq!(r.push("[EMA"), "[EMA");
        assert_eq!(r.finish(), "");
    }

    #[test]
    fn json_arguments_stay_valid() {
        let s = Scanner::new(&[]).unwrap();
        let mut m = Masker::new();
        let pem =
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\\\"kqhkiG9w0B\n-----END PRIVATE KEY-----";
        assert_eq!(m.mask(&s, pem), "[SECRET_1]");
        let mut r = StreamRestorer::for_json(&m);
        let mut out = r.push("{\"to\":\"[SEC");
        out.push_str(&r.push("RET_1]\"}"));
        out.push_str(&r.finish());
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["to"], pem);
    }
}
