//! Restoring placeholders in a streamed answer, where a placeholder may be split across deltas.
//!
//! Only a trailing fragment that is a strict prefix of a placeholder this request issued
//! (`[EMA`, `[EMAIL_1`) is held back; anything else goes out at once, so `[see note]` is not
//! delayed and the holdback never exceeds the longest placeholder.

use super::detect::{Finding, PiiKind, PiiPolicy, Scanner};
use super::mask::{Masker, Table};
use std::collections::BTreeSet;

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

/// Bytes of a streamed answer held back at its end, so that a value still arriving is scanned
/// whole before any of it goes out (longer than any phone number, card or IBAN with spaces).
const HOLD: usize = 64;
/// Held text beyond which a run without whitespace goes out once scanned: tokens and secrets
/// arrive whole before it, an endless base64 blob does not hold the stream forever.
const MAX_HOLD: usize = 16 * 1024;
/// Bytes of already-sent text kept as left context for the detectors (`version 1.2.3.4`).
const CONTEXT: usize = 32;

/// What the answer scan let through, or the kinds that stop the stream (`block`).
pub type Scanned = Result<String, BTreeSet<PiiKind>>;

/// Applies a `mask` or `block` answer policy to one streamed text (a choice's content or a tool
/// call's arguments) as it arrives: a tail is held back until no value can still be growing
/// into it, so a value is masked (or the stream stopped) before any byte of it is sent.
#[derive(Debug, Clone)]
pub struct StreamScanner {
    block: bool,
    /// Sent text, as left context for the next scan.
    context: String,
    /// Received text not sent yet.
    pending: String,
}

impl StreamScanner {
    /// A scanner for `policy` (`block` stops on the first value; anything else masks).
    pub fn new(policy: PiiPolicy) -> StreamScanner {
        StreamScanner {
            block: policy == PiiPolicy::Block,
            context: String::new(),
            pending: String::new(),
        }
    }

    /// Adds a delta; returns the (masked) text that is safe to send now, possibly empty, and
    /// adds the kinds it masked to `found`.
    pub fn push(
        &mut self,
        scanner: &Scanner,
        masker: &mut Masker,
        delta: &str,
        found: &mut BTreeSet<PiiKind>,
    ) -> Scanned {
        self.pending.push_str(delta);
        self.release(scanner, masker, false, found)
    }

    /// Scans and releases everything held back (the text is complete).
    pub fn finish(
        &mut self,
        scanner: &Scanner,
        masker: &mut Masker,
        found: &mut BTreeSet<PiiKind>,
    ) -> Scanned {
        self.release(scanner, masker, true, found)
    }

    fn release(
        &mut self,
        scanner: &Scanner,
        masker: &mut Masker,
        all: bool,
        found: &mut BTreeSet<PiiKind>,
    ) -> Scanned {
        if self.pending.is_empty() {
            return Ok(String::new());
        }
        let base = self.context.len();
        let text = format!("{}{}", self.context, self.pending);
        // Values wholly inside the context were dealt with when they went out.
        let findings: Vec<Finding> = scanner
            .scan(&text)
            .into_iter()
            .filter(|f| f.end > base)
            .collect();
        let cut = if all {
            text.len()
        } else {
            safe_cut(&text, base, &findings)
        };
        let out: Vec<Finding> = findings.into_iter().filter(|f| f.end <= cut).collect();
        let kinds: BTreeSet<PiiKind> = out.iter().map(|f| f.kind.clone()).collect();
        if self.block && !kinds.is_empty() {
            self.pending.clear();
            return Err(kinds);
        }
        let sent = masker.replace(&text, base, cut, &out);
        found.extend(kinds);
        self.pending = text.get(cut..).unwrap_or("").to_string();
        let mut keep = cut.saturating_sub(CONTEXT);
        while !text.is_char_boundary(keep) {
            keep -= 1;
        }
        self.context = text.get(keep..cut).unwrap_or("").to_string();
        Ok(sent)
    }

    /// Bytes currently held back.
    pub fn held(&self) -> usize {
        self.pending.len()
    }
}

/// Where the text can be cut now: [`HOLD`] bytes before its end, moved back to the start of a
/// whitespace-free run it falls in (within [`MAX_HOLD`]) and before any value that reaches past
/// it, until nothing moves it further. Never before `base` (that text is already sent).
fn safe_cut(text: &str, base: usize, findings: &[Finding]) -> usize {
    let mut cut = text.len().saturating_sub(HOLD).max(base);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    loop {
        let before = cut;
        let run = text
            .get(..cut)
            .and_then(|head| head.rfind(char::is_whitespace))
            .map_or(0, |i| {
                i + text
                    .get(i..)
                    .and_then(|t| t.chars().next())
                    .map_or(1, char::len_utf8)
            });
        let inside_run = text
            .get(cut..)
            .and_then(|t| t.chars().next())
            .is_some_and(|c| !c.is_whitespace());
        if inside_run && text.len() - run <= MAX_HOLD {
            cut = run.max(base);
        }
        for f in findings {
            if f.start < cut && f.end > cut {
                cut = f.start.max(base);
            }
        }
        if cut == before {
            return cut;
        }
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

    /// Feeds `chunks` through a scanner; returns what went out before the end (or the block).
    fn scan_run(policy: PiiPolicy, chunks: &[&str]) -> (String, Option<BTreeSet<PiiKind>>) {
        let s = Scanner::new(&[]).unwrap();
        let mut m = Masker::new();
        let mut sc = StreamScanner::new(policy);
        let mut found = BTreeSet::new();
        let mut out = String::new();
        for c in chunks {
            match sc.push(&s, &mut m, c, &mut found) {
                Ok(t) => out.push_str(&t),
                Err(k) => return (out, Some(k)),
            }
        }
        match sc.finish(&s, &mut m, &mut found) {
            Ok(t) => out.push_str(&t),
            Err(k) => return (out, Some(k)),
        }
        (out, None)
    }

    const ANSWER: &str = "Sure. Write to bob.smith@example.org or call +1 415 555 0100; the card \
        4111 1111 1111 1111 is on file, token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.\
        dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U and the key -----BEGIN PRIVATE KEY-----\n\
        MIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nAmIwggJeAgEAAoGBAM\n-----END PRIVATE KEY----- ok. \
        Order 4111 1111 1111 1112 stays.";

    #[test]
    fn streamed_answers_are_masked_whatever_the_split() {
        let s = Scanner::new(&[]).unwrap();
        let whole = Masker::new().mask(&s, ANSWER);
        assert!(
            whole.contains("[EMAIL_1]") && whole.contains("[SECRET_2]"),
            "{whole}"
        );
        assert!(whole.contains("4111 1111 1111 1112"), "{whole}");
        for i in char_splits(ANSWER) {
            let (out, blocked) = scan_run(PiiPolicy::Mask, &[&ANSWER[..i], &ANSWER[i..]]);
            assert!(blocked.is_none());
            assert_eq!(out, whole, "split at {i}");
        }
        // Token by token (a few bytes at a time), as models stream.
        let pieces: Vec<&str> = (0..ANSWER.len())
            .step_by(3)
            .filter_map(|i| ANSWER.get(i..(i + 3).min(ANSWER.len())))
            .collect();
        assert_eq!(pieces.concat(), ANSWER);
        assert_eq!(scan_run(PiiPolicy::Mask, &pieces).0, whole);
    }

    #[test]
    fn a_blocked_stream_stops_before_any_of_the_value() {
        let chars: Vec<String> = ANSWER.chars().map(String::from).collect();
        let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
        let (out, blocked) = scan_run(PiiPolicy::Block, &pieces);
        let kinds = blocked.unwrap();
        assert!(kinds.contains(&PiiKind::Email), "{kinds:?}");
        assert!(out.starts_with("Sure. Write to"), "{out}");
        assert!(!out.contains('@') && !out.contains("bob"), "{out}");
    }

    #[test]
    fn holdback_is_bounded_and_clean_text_flows() {
        let s = Scanner::new(&[]).unwrap();
        let mut m = Masker::new();
        let mut sc = StreamScanner::new(PiiPolicy::Mask);
        let mut found = BTreeSet::new();
        let mut out = String::new();
        for _ in 0..100 {
            out.push_str(
                &sc.push(&s, &mut m, "the quick brown fox ", &mut found)
                    .unwrap(),
            );
            assert!(sc.held() <= HOLD + "quick ".len(), "held {}", sc.held());
        }
        out.push_str(&sc.finish(&s, &mut m, &mut found).unwrap());
        assert_eq!(out, "the quick brown fox ".repeat(100));
        assert!(found.is_empty());
    }
}
