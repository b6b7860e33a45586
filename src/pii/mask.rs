//! Masking: values become typed placeholders (`[EMAIL_1]`) on the way upstream and come back in
//! the answer.
//!
//! Numbering is per kind in order of first appearance and the same value always gets the same
//! placeholder within a request, so two requests that differ only in the values mask to the same
//! text (the semantic cache keys on the masked text).

use super::detect::{Finding, PiiKind, Scanner};
use crate::wire::{ChatRequest, Content};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Placeholder to original value, shared by [`Masker::restore`] and the stream restorer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    originals: HashMap<String, String>,
    /// Byte length of the longest placeholder issued, to bound what a stream holds back.
    max_len: usize,
}

impl Table {
    pub(crate) fn is_empty(&self) -> bool {
        self.originals.is_empty()
    }

    /// Whether `tail` (starting with `[`) is a strict prefix of an issued placeholder.
    pub(crate) fn is_partial(&self, tail: &str) -> bool {
        tail.len() < self.max_len
            && self
                .originals
                .keys()
                .any(|p| p.len() > tail.len() && p.starts_with(tail))
    }

    /// `text` with every issued placeholder replaced by its original; anything else, including
    /// placeholders this request never issued, is left as it is. With `json_escape` the
    /// originals are escaped as inside a JSON string (for tool call arguments, which are JSON
    /// documents: a restored PEM key's newlines must not break them).
    pub(crate) fn restore(&self, text: &str, json_escape: bool) -> String {
        if self.originals.is_empty() || !text.contains('[') {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(i) = rest.find('[') {
            out.push_str(rest.get(..i).unwrap_or(""));
            let from = rest.get(i..).unwrap_or("");
            // '[' and ']' are ASCII, so these offsets are char boundaries.
            let close = from.bytes().take(self.max_len).position(|b| b == b']');
            let hit = close
                .and_then(|j| from.get(..=j))
                .and_then(|p| self.originals.get(p).map(|orig| (p.len(), orig)));
            match hit {
                Some((len, orig)) => {
                    if json_escape {
                        push_json_escaped(&mut out, orig);
                    } else {
                        out.push_str(orig);
                    }
                    rest = from.get(len..).unwrap_or("");
                }
                None => {
                    out.push('[');
                    rest = from.get(1..).unwrap_or("");
                }
            }
        }
        out.push_str(rest);
        out
    }
}

/// Appends `s` escaped as the inside of a JSON string.
fn push_json_escaped(out: &mut String, s: &str) {
    let quoted = Value::String(s.to_string()).to_string();
    out.push_str(
        quoted
            .strip_prefix('"')
            .and_then(|q| q.strip_suffix('"'))
            .unwrap_or(&quoted),
    );
}

/// Per-request masking state: which value got which placeholder.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// `(kind, value)` to placeholder.
    issued: HashMap<(PiiKind, String), String>,
    /// Last number used per kind.
    counters: BTreeMap<PiiKind, usize>,
    table: Table,
}

impl Masker {
    /// An empty masker, one per request.
    pub fn new() -> Masker {
        Masker::default()
    }

    /// `text` with every PII value replaced by its placeholder.
    pub fn mask(&mut self, scanner: &Scanner, text: &str) -> String {
        let mut s = text.to_string();
        self.mask_in_place(scanner, &mut s);
        s
    }

    /// Masks `text` in place; returns the kinds found in it.
    pub fn mask_in_place(&mut self, scanner: &Scanner, text: &mut String) -> BTreeSet<PiiKind> {
        let findings = scanner.scan(text);
        if findings.is_empty() {
            return BTreeSet::new();
        }
        let kinds = findings.iter().map(|f| f.kind.clone()).collect();
        *text = self.replace(text, 0, text.len(), &findings);
        kinds
    }

    /// `text[from..to]` with the given findings (sorted, non-overlapping, offsets into `text`)
    /// replaced by their placeholders; a finding that starts before `from` (its head already
    /// went out in a stream) has the rest of it replaced.
    pub(crate) fn replace(
        &mut self,
        text: &str,
        from: usize,
        to: usize,
        findings: &[Finding],
    ) -> String {
        let mut out = String::with_capacity(to.saturating_sub(from));
        let mut at = from;
        for f in findings.iter().filter(|f| f.end > from && f.start < to) {
            out.push_str(text.get(at..f.start.max(at)).unwrap_or(""));
            let placeholder = self.placeholder(&f.kind, f.value(text));
            out.push_str(&placeholder);
            at = f.end.min(to);
        }
        out.push_str(text.get(at..to).unwrap_or(""));
        out
    }

    fn placeholder(&mut self, kind: &PiiKind, value: &str) -> String {
        let key = (kind.clone(), value.to_string());
        if let Some(p) = self.issued.get(&key) {
            return p.clone();
        }
        let n = self.counters.entry(kind.clone()).or_insert(0);
        *n += 1;
        let p = format!("[{}_{}]", kind.label(), n);
        self.table.max_len = self.table.max_len.max(p.len());
        self.table.originals.insert(p.clone(), value.to_string());
        self.issued.insert(key, p.clone());
        p
    }

    /// Masks every text a chat request sends upstream: content strings, text parts of
    /// multi-part content (images and other parts untouched) and the arguments of tool calls in
    /// the history. Returns the kinds found.
    pub fn mask_chat_request(
        &mut self,
        scanner: &Scanner,
        req: &mut ChatRequest,
    ) -> BTreeSet<PiiKind> {
        let mut kinds = BTreeSet::new();
        for m in &mut req.messages {
            match &mut m.content {
                Some(Content::Text(s)) => kinds.extend(self.mask_in_place(scanner, s)),
                Some(Content::Parts(parts)) => {
                    for part in parts {
                        if let Some(Value::String(s)) = text_part_mut(part) {
                            kinds.extend(self.mask_in_place(scanner, s));
                        }
                    }
                }
                None => {}
            }
            if let Some(Value::Array(calls)) = m.extra.get_mut("tool_calls") {
                for call in calls {
                    if let Some(Value::String(args)) = call.pointer_mut("/function/arguments") {
                        // Placeholders contain no JSON-special characters, so the arguments
                        // stay valid JSON.
                        kinds.extend(self.mask_in_place(scanner, args));
                    }
                }
            }
        }
        kinds
    }

    /// Masks every string in a JSON value (object keys are left alone); returns the kinds.
    pub fn mask_json(&mut self, scanner: &Scanner, value: &mut Value) -> BTreeSet<PiiKind> {
        match value {
            Value::String(s) => self.mask_in_place(scanner, s),
            Value::Array(items) => items
                .iter_mut()
                .flat_map(|v| self.mask_json(scanner, v))
                .collect(),
            Value::Object(map) => map
                .values_mut()
                .flat_map(|v| self.mask_json(scanner, v))
                .collect(),
            _ => BTreeSet::new(),
        }
    }

    /// `text` with the placeholders this masker issued replaced by the original values.
    pub fn restore(&self, text: &str) -> String {
        self.table.restore(text, false)
    }

    /// Restores placeholders in every string of a JSON value (message content, tool call
    /// arguments of a non-stream completion); object keys are left alone.
    pub fn restore_json(&self, value: &mut Value) {
        if self.table.is_empty() {
            return;
        }
        match value {
            // A string that is itself a JSON document (tool call arguments) gets its originals
            // JSON-escaped so it stays parseable.
            Value::String(s) if s.contains('[') => {
                let t = s.trim_start();
                let nested = (t.starts_with('{') || t.starts_with('['))
                    && serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok();
                *s = self.table.restore(s, nested);
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.restore_json(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.restore_json(v)),
            _ => {}
        }
    }

    /// Whether nothing was masked.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The kinds masked so far.
    pub fn kinds(&self) -> BTreeSet<PiiKind> {
        self.counters.keys().cloned().collect()
    }

    /// Number of distinct values masked.
    pub fn len(&self) -> usize {
        self.issued.len()
    }

    pub(crate) fn table(&self) -> &Table {
        &self.table
    }
}

/// The `text` of a `{"type": "text", "text": ...}` part.
fn text_part_mut(part: &mut Value) -> Option<&mut Value> {
    if part.get("type").and_then(Value::as_str) != Some("text") {
        return None;
    }
    part.get_mut("text")
}

/// Calls `f` on every text of a chat request that [`Masker::mask_chat_request`] would mask.
pub(crate) fn for_each_text(req: &ChatRequest, mut f: impl FnMut(&str)) {
    for m in &req.messages {
        match &m.content {
            Some(Content::Text(s)) => f(s),
            Some(Content::Parts(parts)) => {
                for p in parts {
                    if p.get("type").and_then(Value::as_str) == Some("text") {
                        if let Some(s) = p.get("text").and_then(Value::as_str) {
                            f(s);
                        }
                    }
                }
            }
            None => {}
        }
        if let Some(Value::Array(calls)) = m.extra.get("tool_calls") {
            for call in calls {
                if let Some(s) = call.pointer("/function/arguments").and_then(Value::as_str) {
                    f(s);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn scanner() -> Scanner {
        Scanner::new(&[]).unwrap()
    }

    #[test]
    fn placeholders_are_typed_numbered_and_stable() {
        let s = scanner();
        let mut m = Masker::new();
        let text = "Mail a@example.com or b@example.com, again a@example.com; call 555-123-4567.";
        let masked = m.mask(&s, text);
        assert_eq!(
            masked,
            "Mail [EMAIL_1] or [EMAIL_2], again [EMAIL_1]; call [PHONE_1]."
        );
        // Numbering continues across texts of the same request.
        assert_eq!(
            m.mask(&s, "cc b@example.com and c@example.com"),
            "cc [EMAIL_2] and [EMAIL_3]"
        );
        assert_eq!(m.len(), 4);
        assert_eq!(m.kinds(), BTreeSet::from([PiiKind::Email, PiiKind::Phone]));
        assert_eq!(m.restore(&masked), text);
    }

    #[test]
    fn requests_differing_only_in_values_mask_alike() {
        let s = scanner();
        let a = Masker::new().mask(&s, "I am jane@example.com, card 4111 1111 1111 1111");
        let b = Masker::new().mask(&s, "I am john@example.org, card 5555 5555 5555 4444");
        assert_eq!(a, b);
        assert_eq!(a, "I am [EMAIL_1], card [CARD_1]");
    }

    #[test]
    fn restore_leaves_unknown_and_lookalikes() {
        let s = scanner();
        let mut m = Masker::new();
        m.mask(&s, "x@example.com");
        assert_eq!(
            m.restore("[EMAIL_1] [EMAIL_2] [see note] [[EMAIL_1]] [EMAIL_1"),
            "x@example.com [EMAIL_2] [see note] [x@example.com] [EMAIL_1"
        );
        assert_eq!(m.restore("no brackets"), "no brackets");
        assert_eq!(m.restore("ünïcödé [EMAIL_1]!"), "ünïcödé x@example.com!");
        let empty = Masker::new();
        assert!(empty.is_empty());
        assert_eq!(empty.restore("[EMAIL_1]"), "[EMAIL_1]");
    }

    #[test]
    fn chat_request_text_parts_and_tool_args() {
        let s = scanner();
        let mut req: ChatRequest = serde_json::from_value(json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [
                    {"type": "text", "text": "My card is 4111111111111111"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,555-123-4567"}},
                    {"type": "text", "text": "and my mail a@example.com"}
                ]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "c1", "type": "function",
                     "function": {"name": "send", "arguments": "{\"to\":\"a@example.com\"}"}}
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "sent to a@example.com from 10.0.0.7"}
            ]
        }))
        .unwrap();
        assert_eq!(
            s.request_kinds(&req),
            BTreeSet::from([PiiKind::Email, PiiKind::Card, PiiKind::IpAddress])
        );
        let mut m = Masker::new();
        let kinds = m.mask_chat_request(&s, &mut req);
        assert_eq!(
            kinds,
            BTreeSet::from([PiiKind::Email, PiiKind::Card, PiiKind::IpAddress])
        );
        let v = serde_json::to_value(&req).unwrap();
        assert_eq!(v["messages"][0]["content"], "Be brief.");
        assert_eq!(
            v["messages"][1]["content"][0]["text"],
            "My card is [CARD_1]"
        );
        assert_eq!(
            v["messages"][1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,555-123-4567"
        );
        assert_eq!(
            v["messages"][1]["content"][2]["text"],
            "and my mail [EMAIL_1]"
        );
        assert_eq!(
            v["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"to\":\"[EMAIL_1]\"}"
        );
        assert_eq!(v["messages"][3]["content"], "sent to [EMAIL_1] from [IP_1]");
        assert!(s.request_kinds(&req).is_empty());
    }

    #[test]
    fn restore_json_everywhere_but_keys() {
        let s = scanner();
        let mut m = Masker::new();
        m.mask(&s, "a@example.com 192.168.0.1");
        let mut v = json!({
            "choices": [{"message": {
                "content": "Sent to [EMAIL_1].",
                "tool_calls": [{"function": {"arguments": "{\"ip\":\"[IP_1]\"}"}}]
            }}],
            "[EMAIL_1]": 1,
            "n": 3
        });
        m.restore_json(&mut v);
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "Sent to a@example.com."
        );
        assert_eq!(
            v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"ip\":\"192.168.0.1\"}"
        );
        assert_eq!(v["[EMAIL_1]"], 1);
        assert_eq!(v["n"], 3);
        // Originals restored inside a JSON document string are escaped.
        let mut m = Masker::new();
        let pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----";
        assert_eq!(m.mask(&s, pem), "[SECRET_1]");
        let mut v = json!({"arguments": "{\"key\":\"[SECRET_1]\"}", "content": "[SECRET_1]"});
        m.restore_json(&mut v);
        let args: Value = serde_json::from_str(v["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args["key"], pem);
        assert_eq!(v["content"], pem);
    }

    #[test]
    fn custom_kind_placeholders() {
        let s = Scanner::new(&[("employee_id".into(), r"EMP-\d{6}".into())]).unwrap();
        let mut m = Masker::new();
        let masked = m.mask(&s, "EMP-000042 and EMP-000043");
        assert_eq!(masked, "[EMPLOYEE_ID_1] and [EMPLOYEE_ID_2]");
        assert_eq!(m.restore(&masked), "EMP-000042 and EMP-000043");
    }
}
