//! `sluice calibrate`: measure the semantic cache on labelled pairs and pick a threshold.
//!
//! Both prompts of every pair are embedded with the real [`Embedder`]; for each threshold a pair
//! is a hit when its cosine reaches the threshold and (with verification on) [`verify`] accepts
//! it. Precision is the share of hits whose cached answer fits; recall the share of same-answer
//! pairs that hit. The recommended threshold is the lowest one whose precision meets the target,
//! which is the one with the most recall. Conversation pairs are a hit only when everything
//! before the last user message is identical (the exact-match scope), so a question asked in
//! another context can never hit.
//!
//! Data format: data/eval/README.md.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Deserialize;

use crate::cache::verify::{verify, Verdict, VerifyConfig};
use crate::embed::{cosine, EmbedConfig, EmbedError, Embedder};

/// Inputs of one calibration run.
#[derive(Debug, Clone)]
pub struct CalibrateArgs {
    /// JSONL of `{id, category, a, b, same_answer}`.
    pub pairs: PathBuf,
    /// JSONL of conversation pairs (`a`, `b` are OpenAI `messages` lists).
    pub conversations: Option<PathBuf>,
    /// Least precision of hits the recommended threshold must reach.
    pub target_precision: f64,
    pub embed: EmbedConfig,
    pub verify: VerifyConfig,
    /// Thresholds to tabulate, ascending.
    pub thresholds: Vec<f32>,
    /// Also list every wrong hit and every missed same-answer pair at the recommended threshold.
    pub verbose: bool,
}

impl CalibrateArgs {
    /// Defaults: target precision 0.95, thresholds 0.70..=0.99 by 0.01, default model and verifier.
    pub fn new(pairs: PathBuf) -> Self {
        Self {
            pairs,
            conversations: None,
            target_precision: 0.95,
            embed: EmbedConfig::default(),
            verify: VerifyConfig::default(),
            thresholds: (70..=99).map(|t| t as f32 / 100.0).collect(),
            verbose: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CalibrateError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{} holds no pairs", path.display())]
    Empty { path: PathBuf },
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error("cannot write the report: {0}")]
    Write(#[from] std::io::Error),
}

/// One labelled pair of prompts.
#[derive(Debug, Clone, Deserialize)]
pub struct Pair {
    pub id: String,
    pub category: String,
    pub a: String,
    pub b: String,
    pub same_answer: bool,
}

/// One labelled pair of conversations.
#[derive(Debug, Clone, Deserialize)]
pub struct ConversationPair {
    pub id: String,
    pub subtype: String,
    pub a: Vec<serde_json::Value>,
    pub b: Vec<serde_json::Value>,
    pub same_answer: bool,
}

/// A pair with its cosine, ready to score at any threshold.
#[derive(Debug, Clone)]
pub struct ScoredPair {
    pub id: String,
    pub category: String,
    pub same_answer: bool,
    pub cosine: f32,
    /// The verifier's answer (taken as new = b, cached = a).
    pub verdict: Verdict,
    /// False when the exact-match scope differs (conversations): never a hit.
    pub same_scope: bool,
}

impl ScoredPair {
    pub fn hit(&self, threshold: f32, verification: bool) -> bool {
        self.same_scope && self.cosine >= threshold && (!verification || self.verdict.is_accept())
    }
}

/// Hits at one threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Counts {
    pub hits: usize,
    pub correct_hits: usize,
    /// Pairs whose cached answer fits (the most hits there could be).
    pub positives: usize,
}

impl Counts {
    pub fn of<'a>(
        pairs: impl IntoIterator<Item = &'a ScoredPair>,
        threshold: f32,
        verification: bool,
    ) -> Self {
        let mut c = Counts::default();
        for p in pairs {
            c.positives += usize::from(p.same_answer);
            if p.hit(threshold, verification) {
                c.hits += 1;
                c.correct_hits += usize::from(p.same_answer);
            }
        }
        c
    }
    /// Share of hits that serve a fitting answer (1.0 when nothing hits).
    pub fn precision(&self) -> f64 {
        if self.hits == 0 {
            1.0
        } else {
            self.correct_hits as f64 / self.hits as f64
        }
    }
    pub fn recall(&self) -> f64 {
        if self.positives == 0 {
            0.0
        } else {
            self.correct_hits as f64 / self.positives as f64
        }
    }
    pub fn wrong(&self) -> usize {
        self.hits - self.correct_hits
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ThresholdRow {
    pub threshold: f32,
    pub verified: Counts,
    pub unverified: Counts,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CategoryRow {
    pub category: String,
    pub pairs: usize,
    pub same_answer: usize,
    pub hits_verified: usize,
    pub hits_unverified: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ConversationReport {
    pub pairs: usize,
    /// Conversation pairs served from cache at the recommended threshold, per subtype.
    pub hits_by_subtype: BTreeMap<String, (usize, usize)>,
    /// Hits on pairs whose answers differ (a context swap served): must be 0.
    pub wrong_hits: usize,
}

/// What a calibration run found.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub rows: Vec<ThresholdRow>,
    /// Lowest threshold whose verified precision reaches the target (None: none does).
    pub recommended: Option<f32>,
    pub target_precision: f64,
    /// Verified counts at the recommended threshold.
    pub at_recommended: Option<Counts>,
    pub per_category: Vec<CategoryRow>,
    pub conversations: Option<ConversationReport>,
}

/// Run a calibration and write the tables to `out`.
pub fn run(args: CalibrateArgs, out: &mut impl Write) -> Result<Report, CalibrateError> {
    let pairs: Vec<Pair> = load_jsonl(&args.pairs)?;
    let started = Instant::now();
    let embedder = Embedder::load(&args.embed)?;
    writeln!(
        out,
        "model loaded in {:.2} s",
        started.elapsed().as_secs_f64()
    )?;

    let started = Instant::now();
    let scored = score_pairs(&embedder, &pairs, &args.verify)?;
    writeln!(
        out,
        "embedded {} prompts in {:.2} s",
        pairs.len() * 2,
        started.elapsed().as_secs_f64()
    )?;

    let rows = table(&scored, &args.thresholds);
    let recommended = recommend(&rows, args.target_precision);
    write_table(out, &rows, args.target_precision)?;

    let (at_recommended, per_category) = match recommended {
        Some(t) => {
            let counts = Counts::of(&scored, t, true);
            writeln!(
                out,
                "\nrecommended threshold {t:.2}: precision {:.3}, recall {:.3}, {} wrong answers served",
                counts.precision(),
                counts.recall(),
                counts.wrong()
            )?;
            let cats = categories(&scored, t);
            write_categories(out, &cats, t)?;
            if args.verbose {
                write_mistakes(out, &scored, t, &pairs)?;
            }
            (Some(counts), cats)
        }
        None => {
            writeln!(
                out,
                "\nno threshold reaches precision {:.2}: keep the semantic cache off or tighten the verifier",
                args.target_precision
            )?;
            (None, Vec::new())
        }
    };

    let conversations = match &args.conversations {
        Some(path) => {
            let convs: Vec<ConversationPair> = load_jsonl(path)?;
            let scored = score_conversations(&embedder, &convs, &args.verify)?;
            let threshold = recommended.unwrap_or(1.0);
            let report = conversation_report(&scored, threshold);
            write_conversations(out, &report, threshold)?;
            Some(report)
        }
        None => None,
    };

    Ok(Report {
        rows,
        recommended,
        target_precision: args.target_precision,
        at_recommended,
        per_category,
        conversations,
    })
}

/// Embed both prompts of every pair and run the verifier once (its answer does not depend on
/// the threshold).
pub fn score_pairs(
    embedder: &Embedder,
    pairs: &[Pair],
    config: &VerifyConfig,
) -> Result<Vec<ScoredPair>, CalibrateError> {
    let texts: Vec<&str> = pairs
        .iter()
        .flat_map(|p| [p.a.as_str(), p.b.as_str()])
        .collect();
    let vectors = embedder.embed_batch(&texts)?;
    Ok(pairs
        .iter()
        .zip(vectors.chunks(2))
        .map(|(p, v)| {
            let cos = match v {
                [va, vb] => cosine(va, vb),
                _ => 0.0,
            };
            ScoredPair {
                id: p.id.clone(),
                category: p.category.clone(),
                same_answer: p.same_answer,
                cosine: cos,
                verdict: verify(&p.b, &p.a, cos, config),
                same_scope: true,
            }
        })
        .collect())
}

/// Conversations: the scope is everything before the last user message; only the last user
/// message is embedded and verified.
pub fn score_conversations(
    embedder: &Embedder,
    pairs: &[ConversationPair],
    config: &VerifyConfig,
) -> Result<Vec<ScoredPair>, CalibrateError> {
    let split: Vec<_> = pairs
        .iter()
        .map(|p| (split_last_user(&p.a), split_last_user(&p.b)))
        .collect();
    let texts: Vec<&str> = split
        .iter()
        .flat_map(|((_, qa), (_, qb))| [qa.as_str(), qb.as_str()])
        .collect();
    let vectors = embedder.embed_batch(&texts)?;
    Ok(pairs
        .iter()
        .zip(split.iter().zip(vectors.chunks(2)))
        .map(|(p, (((scope_a, qa), (scope_b, qb)), v))| {
            let cos = match v {
                [va, vb] => cosine(va, vb),
                _ => 0.0,
            };
            ScoredPair {
                id: p.id.clone(),
                category: p.subtype.clone(),
                same_answer: p.same_answer,
                cosine: cos,
                verdict: verify(qb, qa, cos, config),
                same_scope: scope_a == scope_b,
            }
        })
        .collect())
}

/// (every message before the last user message, the last user message's text).
fn split_last_user(messages: &[serde_json::Value]) -> (Vec<serde_json::Value>, String) {
    let last_user = messages
        .iter()
        .rposition(|m| m.get("role").and_then(|r| r.as_str()) == Some("user"));
    match last_user {
        Some(i) => (messages[..i].to_vec(), message_text(&messages[i])),
        None => (messages.to_vec(), String::new()),
    }
}

/// Text of a message: a string content, or the text parts of a content array.
fn message_text(message: &serde_json::Value) -> String {
    match message.get("content") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

pub fn table(scored: &[ScoredPair], thresholds: &[f32]) -> Vec<ThresholdRow> {
    thresholds
        .iter()
        .map(|&t| ThresholdRow {
            threshold: t,
            verified: Counts::of(scored, t, true),
            unverified: Counts::of(scored, t, false),
        })
        .collect()
}

/// Lowest threshold with at least one hit whose verified precision reaches `target`.
pub fn recommend(rows: &[ThresholdRow], target: f64) -> Option<f32> {
    rows.iter()
        .find(|r| r.verified.hits > 0 && r.verified.precision() >= target)
        .map(|r| r.threshold)
}

pub fn categories(scored: &[ScoredPair], threshold: f32) -> Vec<CategoryRow> {
    let mut rows: BTreeMap<&str, CategoryRow> = BTreeMap::new();
    for p in scored {
        let row = rows.entry(&p.category).or_insert_with(|| CategoryRow {
            category: p.category.clone(),
            pairs: 0,
            same_answer: 0,
            hits_verified: 0,
            hits_unverified: 0,
        });
        row.pairs += 1;
        row.same_answer += usize::from(p.same_answer);
        row.hits_verified += usize::from(p.hit(threshold, true));
        row.hits_unverified += usize::from(p.hit(threshold, false));
    }
    rows.into_values().collect()
}

fn conversation_report(scored: &[ScoredPair], threshold: f32) -> ConversationReport {
    let mut hits_by_subtype: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let mut wrong_hits = 0;
    for p in scored {
        let entry = hits_by_subtype.entry(p.category.clone()).or_default();
        entry.1 += 1;
        if p.hit(threshold, true) {
            entry.0 += 1;
            wrong_hits += usize::from(!p.same_answer);
        }
    }
    ConversationReport {
        pairs: scored.len(),
        hits_by_subtype,
        wrong_hits,
    }
}

fn write_table(out: &mut impl Write, rows: &[ThresholdRow], target: f64) -> std::io::Result<()> {
    writeln!(
        out,
        "\n                 with verification          | cosine only"
    )?;
    writeln!(
        out,
        "threshold  hits  precision  recall  wrong | hits  precision  recall  wrong"
    )?;
    for r in rows {
        let (v, u) = (r.verified, r.unverified);
        let mark = if v.hits > 0 && v.precision() >= target {
            "*"
        } else {
            " "
        };
        writeln!(
            out,
            "{:>8.2}{mark} {:>5}  {:>9.3}  {:>6.3}  {:>5} | {:>4}  {:>9.3}  {:>6.3}  {:>5}",
            r.threshold,
            v.hits,
            v.precision(),
            v.recall(),
            v.wrong(),
            u.hits,
            u.precision(),
            u.recall(),
            u.wrong()
        )?;
    }
    writeln!(out, "(* precision >= {target:.2})")
}

fn write_categories(out: &mut impl Write, rows: &[CategoryRow], t: f32) -> std::io::Result<()> {
    writeln!(out, "\nper category at {t:.2}:")?;
    writeln!(
        out,
        "category          pairs  same_answer  hits(verified)  hits(cosine only)"
    )?;
    for r in rows {
        writeln!(
            out,
            "{:<16} {:>6}  {:>11}  {:>14}  {:>17}",
            r.category, r.pairs, r.same_answer, r.hits_verified, r.hits_unverified
        )?;
    }
    Ok(())
}

fn write_mistakes(
    out: &mut impl Write,
    scored: &[ScoredPair],
    t: f32,
    pairs: &[Pair],
) -> std::io::Result<()> {
    writeln!(out, "\nwrong hits and missed same-answer pairs at {t:.2}:")?;
    for (s, p) in scored.iter().zip(pairs) {
        let hit = s.hit(t, true);
        if hit != s.same_answer {
            let what = if hit { "WRONG HIT" } else { "missed" };
            writeln!(
                out,
                "{what:<9} {:<16} cos {:.3} {}\n          a: {}\n          b: {}",
                s.id, s.cosine, s.verdict, p.a, p.b
            )?;
        }
    }
    Ok(())
}

fn write_conversations(
    out: &mut impl Write,
    report: &ConversationReport,
    t: f32,
) -> std::io::Result<()> {
    writeln!(
        out,
        "\nconversations at {t:.2} (scope = every message before the last user message):"
    )?;
    for (subtype, (hits, total)) in &report.hits_by_subtype {
        writeln!(out, "{subtype:<26} {hits}/{total} hit")?;
    }
    if report.wrong_hits == 0 {
        writeln!(out, "no context_swap pair hits")
    } else {
        writeln!(
            out,
            "{} conversation pairs served a wrong answer",
            report.wrong_hits
        )
    }
}

fn load_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, CalibrateError> {
    let text = std::fs::read_to_string(path).map_err(|source| CalibrateError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let item = serde_json::from_str(line).map_err(|e| CalibrateError::Parse {
            path: path.to_path_buf(),
            line: i + 1,
            message: e.to_string(),
        })?;
        items.push(item);
    }
    if items.is_empty() {
        return Err(CalibrateError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(items)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn data(file: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data/eval")
            .join(file)
    }

    #[test]
    fn calibration_on_shipped_eval_data_is_precise_and_never_crosses_contexts() {
        let mut args = CalibrateArgs::new(data("dev-pairs.jsonl"));
        args.conversations = Some(data("dev-conversations.jsonl"));
        args.embed =
            EmbedConfig::from_models_root(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models"));
        let mut out = Vec::new();
        let report = run(args, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        eprintln!("{text}");
        let counts = report.at_recommended.unwrap();
        assert!(
            counts.precision() >= 0.90,
            "precision {}",
            counts.precision()
        );
        let conv = report.conversations.unwrap();
        assert_eq!(conv.wrong_hits, 0);
        let swaps = conv.hits_by_subtype.get("context_swap").map_or(0, |h| h.0);
        assert_eq!(swaps, 0);
    }

    #[test]
    fn scope_split_keeps_everything_before_the_last_user_message() {
        let msgs: Vec<serde_json::Value> = serde_json::from_str(
            r#"[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},
                {"role":"assistant","content":"hello"},{"role":"user","content":[{"type":"text","text":"q?"}]}]"#,
        )
        .unwrap();
        let (scope, last) = split_last_user(&msgs);
        assert_eq!(scope.len(), 3);
        assert_eq!(last, "q?");
    }

    #[test]
    fn recommendation_is_the_lowest_threshold_meeting_the_target() {
        let pair = |same, cosine| ScoredPair {
            id: String::new(),
            category: "c".into(),
            same_answer: same,
            cosine,
            verdict: Verdict::Accept,
            same_scope: true,
        };
        let scored = vec![pair(true, 0.95), pair(false, 0.85), pair(true, 0.80)];
        let rows = table(&scored, &[0.75, 0.80, 0.90, 0.99]);
        assert_eq!(recommend(&rows, 0.95), Some(0.90));
        assert_eq!(recommend(&rows, 0.5), Some(0.75));
    }
}
