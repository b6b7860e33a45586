//! Precision and recall of the scanner per kind over a labelled set (`data/pii/labelled.jsonl`),
//! shared by the regression test and the bench report.
//!
//! Each line is `{"text": ..., "spans": [{"kind": "email", "value": "..."}]}`. A finding counts
//! as a true positive only if its kind and exact value match a labelled span of that line.

use super::detect::Scanner;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The custom pattern the labelled set exercises (kind `employee_id`).
pub const LABELLED_CUSTOM: (&str, &str) = ("employee_id", r"\bEMP-\d{6}\b");

#[derive(Deserialize)]
struct Line {
    text: String,
    #[serde(default)]
    spans: Vec<Span>,
}

#[derive(Deserialize)]
struct Span {
    kind: String,
    value: String,
}

/// Counts for one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindScore {
    /// Findings matching a labelled span.
    pub true_pos: usize,
    /// Findings with no labelled span.
    pub false_pos: usize,
    /// Labelled spans not found.
    pub false_neg: usize,
}

impl KindScore {
    /// Share of findings that are right (1.0 when nothing was found).
    pub fn precision(&self) -> f64 {
        ratio(self.true_pos, self.true_pos + self.false_pos)
    }

    /// Share of labelled spans found (1.0 when none were labelled).
    pub fn recall(&self) -> f64 {
        ratio(self.true_pos, self.true_pos + self.false_neg)
    }
}

fn ratio(n: usize, d: usize) -> f64 {
    if d == 0 {
        1.0
    } else {
        n as f64 / d as f64
    }
}

/// The outcome over a labelled set.
#[derive(Debug, Clone, Default)]
pub struct Evaluation {
    /// Lines read.
    pub lines: usize,
    /// Lines with no labelled span.
    pub negatives: usize,
    /// Scores by kind name.
    pub by_kind: BTreeMap<String, KindScore>,
    /// Each miss and false alarm, `line N: +kind 'value'` or `-kind 'value'`.
    pub mistakes: Vec<String>,
}

impl Evaluation {
    /// A fixed-width table: kind, support, precision, recall.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{} lines ({} negatives)\n{:<12} {:>7} {:>4} {:>4} {:>9} {:>7}\n",
            self.lines, self.negatives, "kind", "support", "fp", "fn", "precision", "recall"
        );
        for (kind, s) in &self.by_kind {
            let _ = writeln!(
                out,
                "{:<12} {:>7} {:>4} {:>4} {:>9.3} {:>7.3}",
                kind,
                s.true_pos + s.false_neg,
                s.false_pos,
                s.false_neg,
                s.precision(),
                s.recall()
            );
        }
        out
    }
}

/// Scores `scanner` on a JSONL labelled set.
pub fn evaluate(scanner: &Scanner, jsonl: &str) -> Result<Evaluation, String> {
    let mut eval = Evaluation::default();
    for (n, raw) in jsonl.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(raw).map_err(|e| format!("line {}: {e}", n + 1))?;
        eval.lines += 1;
        if line.spans.is_empty() {
            eval.negatives += 1;
        }
        let mut expected: Vec<(String, String)> =
            line.spans.into_iter().map(|s| (s.kind, s.value)).collect();
        for f in scanner.scan(&line.text) {
            let got = (f.kind.as_str().to_string(), f.value(&line.text).to_string());
            let score = eval.by_kind.entry(got.0.clone()).or_default();
            if let Some(i) = expected.iter().position(|e| *e == got) {
                expected.swap_remove(i);
                score.true_pos += 1;
            } else {
                score.false_pos += 1;
                eval.mistakes
                    .push(format!("line {}: +{} '{}'", n + 1, got.0, got.1));
            }
        }
        for (kind, value) in expected {
            eval.mistakes
                .push(format!("line {}: -{kind} '{value}'", n + 1));
            eval.by_kind.entry(kind).or_default().false_neg += 1;
        }
    }
    Ok(eval)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn labelled_set_precision_and_recall() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/pii/labelled.jsonl");
        let jsonl = std::fs::read_to_string(path).unwrap();
        let custom = [(LABELLED_CUSTOM.0.to_string(), LABELLED_CUSTOM.1.to_string())];
        let scanner = Scanner::new(&custom).unwrap();
        let eval = evaluate(&scanner, &jsonl).unwrap();
        println!("{}", eval.table());
        for m in &eval.mistakes {
            println!("{m}");
        }
        assert!(eval.lines >= 300, "{} lines", eval.lines);
        assert!(eval.negatives >= 100, "{} negatives", eval.negatives);
        for kind in [
            "email",
            "phone",
            "card",
            "iban",
            "ssn",
            "ip",
            "secret",
            "employee_id",
        ] {
            let s = eval.by_kind.get(kind).cloned().unwrap_or_default();
            assert!(
                s.true_pos + s.false_neg >= 5,
                "{kind}: too few labelled spans"
            );
            assert!(
                s.precision() >= 0.95,
                "{kind}: precision {:.3}",
                s.precision()
            );
            assert!(s.recall() >= 0.90, "{kind}: recall {:.3}", s.recall());
        }
    }

    #[test]
    fn scoring() {
        let scanner = Scanner::new(&[]).unwrap();
        let jsonl = concat!(
            r#"{"text": "a@example.com and 999.1.1.1", "spans": [{"kind": "email", "value": "a@example.com"}]}"#,
            "\n",
            r#"{"text": "host 10.0.0.1", "spans": []}"#,
            "\n\n",
            r#"{"text": "nothing", "spans": [{"kind": "ssn", "value": "123-45-6789"}]}"#,
        );
        let e = evaluate(&scanner, jsonl).unwrap();
        assert_eq!(e.lines, 3);
        assert_eq!(e.negatives, 1);
        assert_eq!(e.by_kind["email"].true_pos, 1);
        assert_eq!(e.by_kind["ip"].false_pos, 1);
        assert_eq!(e.by_kind["ssn"].false_neg, 1);
        assert_eq!(e.by_kind["ssn"].recall(), 0.0);
        assert_eq!(e.by_kind["ip"].precision(), 0.0);
        assert_eq!(e.mistakes.len(), 2);
        assert!(evaluate(&scanner, "{not json").is_err());
    }
}
