//! Look-alike verification: decides whether a cached answer, found by cosine, fits a new prompt.
//!
//! Cosine alone cannot tell "enable" from "disable" or order 58213 from 58231: look-alikes score
//! as high as paraphrases. After the index has found the nearest earlier prompt, [`verify`]
//! compares the two texts and accepts only when nothing that changes the answer differs:
//!
//! 1. Exact slots: quoted strings, numbers/IDs/versions/amounts, negation count, calendar words,
//!    named entities, the kind of question (who/where/when) and direction ("A to B", "A than B").
//! 2. Content words (stop words removed, lightly stemmed, spelling variants folded): an antonym
//!    pair, words only on one side (narrower or broader scope) or a one-for-one swap reject.
//! 3. Rewordings that change several words on both sides are accepted only if the cosine is high
//!    enough for how much changed: the more words differ, the higher the cosine must be.
//!
//! Everything here is pure and cheap (about 13 µs per call in release): no model calls, no I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::OnceLock;

/// Knobs of the verifier. Defaults are the measured ones (BENCHMARKS.md).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifyConfig {
    /// Reject when numbers, IDs, versions or amounts differ.
    pub check_numbers: bool,
    /// Reject when one side is negated and the other is not.
    pub check_negation: bool,
    /// Reject when named entities (capitalised words, acronyms) differ.
    pub check_entities: bool,
    /// Reject when "from A to B" became "from B to A" (or "A than B").
    pub check_direction: bool,
    /// Content words that may appear on one side only (a narrower or broader question).
    /// 0: any added qualifier is a different question.
    pub max_one_sided_words: usize,
    /// Words shorter than this are never treated as misspellings of each other.
    pub spelling_min_len: usize,
    /// Rewordings (words differ on both sides): least cosine when almost nothing differs.
    pub reword_min_cosine: f32,
    /// Rewordings: extra cosine required per unit of difference ratio (0..1).
    pub reword_cosine_per_diff: f32,
    /// Rewordings: most differing content words (both sides together).
    pub reword_max_diff_words: usize,
}

impl Default for VerifyConfig {
    fn default() -> Self {
        Self {
            check_numbers: true,
            check_negation: true,
            check_entities: true,
            check_direction: true,
            max_one_sided_words: 0,
            spelling_min_len: 4,
            reword_min_cosine: 0.75,
            reword_cosine_per_diff: 0.10,
            reword_max_diff_words: 8,
        }
    }
}

/// The verifier's answer for one candidate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "snake_case")]
pub enum Verdict {
    Accept,
    Reject(RejectReason),
}

impl Verdict {
    pub fn is_accept(&self) -> bool {
        matches!(self, Verdict::Accept)
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Verdict::Accept => f.write_str("accept"),
            Verdict::Reject(reason) => write!(f, "reject: {reason}"),
        }
    }
}

/// Why a look-alike was rejected; the words are the normalised forms that differ.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RejectReason {
    /// Quoted text differs.
    QuotedMismatch {
        new: Vec<String>,
        cached: Vec<String>,
    },
    /// Numbers, amounts, IDs or versions differ.
    NumberMismatch {
        new: Vec<String>,
        cached: Vec<String>,
    },
    /// One side is negated ("not", "never", "without", "avoid"...), the other is not.
    NegationMismatch,
    /// Calendar or time words differ (weekday, month, today/tomorrow, week/month).
    DateMismatch {
        new: Vec<String>,
        cached: Vec<String>,
    },
    /// Named entities differ.
    EntityMismatch {
        new: Vec<String>,
        cached: Vec<String>,
    },
    /// The question asks for another kind of answer (who / where / when).
    QuestionKindMismatch {
        new: Vec<String>,
        cached: Vec<String>,
    },
    /// Same words, other direction ("from A to B" vs "from B to A").
    DirectionMismatch { word: String },
    /// A word and its opposite ("enable"/"disable", "safe"/"unsafe", "increase"/"decrease").
    Antonym { new: String, cached: String },
    /// Content words on one side only: a narrower or broader question.
    ScopeMismatch {
        extra_in_new: Vec<String>,
        extra_in_cached: Vec<String>,
    },
    /// One content word swapped for another: another entity, product, unit...
    Substitution { new: String, cached: String },
    /// Reworded more than the cosine can vouch for.
    RewordTooLarge {
        diff_words: usize,
        cosine_millis: u32,
        required_millis: u32,
    },
    /// No content word in common.
    NoSharedContent,
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |v: &[String]| {
            if v.is_empty() {
                "(none)".to_owned()
            } else {
                v.join(", ")
            }
        };
        match self {
            Self::QuotedMismatch { new, cached } => {
                write!(
                    f,
                    "quoted text differs: [{}] vs [{}]",
                    list(new),
                    list(cached)
                )
            }
            Self::NumberMismatch { new, cached } => {
                write!(f, "numbers differ: [{}] vs [{}]", list(new), list(cached))
            }
            Self::NegationMismatch => f.write_str("one prompt is negated, the other is not"),
            Self::DateMismatch { new, cached } => {
                write!(
                    f,
                    "dates or times differ: [{}] vs [{}]",
                    list(new),
                    list(cached)
                )
            }
            Self::EntityMismatch { new, cached } => {
                write!(
                    f,
                    "named entities differ: [{}] vs [{}]",
                    list(new),
                    list(cached)
                )
            }
            Self::QuestionKindMismatch { new, cached } => {
                write!(
                    f,
                    "question kind differs: [{}] vs [{}]",
                    list(new),
                    list(cached)
                )
            }
            Self::DirectionMismatch { word } => {
                write!(f, "direction differs around \"{word}\"")
            }
            Self::Antonym { new, cached } => write!(f, "opposite words: {new} vs {cached}"),
            Self::ScopeMismatch {
                extra_in_new,
                extra_in_cached,
            } => write!(
                f,
                "scope differs: only in new [{}], only in cached [{}]",
                list(extra_in_new),
                list(extra_in_cached)
            ),
            Self::Substitution { new, cached } => {
                write!(f, "word swapped: {new} vs {cached}")
            }
            Self::RewordTooLarge {
                diff_words,
                cosine_millis,
                required_millis,
            } => write!(
                f,
                "{diff_words} words differ; cosine {:.3} below the {:.3} that needs",
                f64::from(*cosine_millis) / 1000.0,
                f64::from(*required_millis) / 1000.0
            ),
            Self::NoSharedContent => f.write_str("no content word in common"),
        }
    }
}

/// Decide whether the answer cached for `cached` may be served for `new`.
///
/// `cosine` is the similarity the index found for the two prompts.
pub fn verify(new: &str, cached: &str, cosine: f32, config: &VerifyConfig) -> Verdict {
    match check(&Analysis::of(new), &Analysis::of(cached), cosine, config) {
        Ok(()) => Verdict::Accept,
        Err(reason) => Verdict::Reject(reason),
    }
}

fn check(a: &Analysis, b: &Analysis, cosine: f32, cfg: &VerifyConfig) -> Result<(), RejectReason> {
    if a.quoted != b.quoted {
        return Err(RejectReason::QuotedMismatch {
            new: a.quoted.clone(),
            cached: b.quoted.clone(),
        });
    }
    if cfg.check_numbers && a.numbers != b.numbers {
        let (new, cached) = multiset_diff(&a.numbers, &b.numbers);
        return Err(RejectReason::NumberMismatch { new, cached });
    }
    if cfg.check_negation && a.negations % 2 != b.negations % 2 {
        return Err(RejectReason::NegationMismatch);
    }
    if a.calendar != b.calendar {
        let (new, cached) = set_diff(&a.calendar, &b.calendar);
        return Err(RejectReason::DateMismatch { new, cached });
    }
    if cfg.check_entities {
        // An entity written in lower case on the other side ("paris") still matches.
        let missing = |x: &Analysis, y: &Analysis| -> Vec<String> {
            x.entities
                .iter()
                .filter(|e| !y.entities.contains(*e) && !y.lower_words.contains(*e))
                .cloned()
                .collect()
        };
        let (new, cached) = (missing(a, b), missing(b, a));
        if !new.is_empty() || !cached.is_empty() {
            return Err(RejectReason::EntityMismatch { new, cached });
        }
    }
    if a.question_kind != b.question_kind {
        let (new, cached) = set_diff(&a.question_kind, &b.question_kind);
        return Err(RejectReason::QuestionKindMismatch { new, cached });
    }
    if cfg.check_direction {
        for (prep, word_a) in &a.governed {
            if let Some(word_b) = b.governed.get(prep) {
                if word_a != word_b && a.content.contains(word_b) && b.content.contains(word_a) {
                    return Err(RejectReason::DirectionMismatch { word: prep.clone() });
                }
            }
        }
    }

    // Content words: pair spelling variants and synonyms, then look at what is left.
    let mut only_a: Vec<&String> = a.content.difference(&b.content).collect();
    let mut only_b: Vec<&String> = b.content.difference(&a.content).collect();
    if let Some((new, cached)) = lexical_antonym(&a.stems, &b.stems) {
        return Err(RejectReason::Antonym { new, cached });
    }
    for x in &only_a {
        for y in &only_b {
            if prefix_antonyms(x, y) {
                return Err(RejectReason::Antonym {
                    new: (*x).clone(),
                    cached: (*y).clone(),
                });
            }
        }
    }
    only_a.retain(|x| {
        let pair = only_b
            .iter()
            .position(|y| same_word(a.written(x), b.written(y), cfg.spelling_min_len));
        match pair {
            Some(i) => {
                only_b.remove(i);
                false
            }
            None => true,
        }
    });
    let strings = |v: &[&String]| v.iter().map(|s| (*s).clone()).collect::<Vec<_>>();
    match (only_a.len(), only_b.len()) {
        (0, 0) => Ok(()),
        (n, 0) | (0, n) => {
            if n <= cfg.max_one_sided_words {
                Ok(())
            } else {
                Err(RejectReason::ScopeMismatch {
                    extra_in_new: strings(&only_a),
                    extra_in_cached: strings(&only_b),
                })
            }
        }
        (1, 1) => Err(RejectReason::Substitution {
            new: only_a[0].clone(),
            cached: only_b[0].clone(),
        }),
        (na, nb) => {
            let shared = a.content.len() - (a.content.len().min(na));
            let shared = shared.min(b.content.len().saturating_sub(nb));
            if shared == 0 {
                return Err(RejectReason::NoSharedContent);
            }
            let diff = na + nb;
            let ratio = diff as f32 / (diff + 2 * shared) as f32;
            let required = cfg.reword_min_cosine + cfg.reword_cosine_per_diff * ratio;
            if diff > cfg.reword_max_diff_words || cosine < required {
                Err(RejectReason::RewordTooLarge {
                    diff_words: diff,
                    cosine_millis: millis(cosine),
                    required_millis: millis(required),
                })
            } else {
                Ok(())
            }
        }
    }
}

fn millis(x: f32) -> u32 {
    (x.clamp(0.0, 1.0) * 1000.0).round() as u32
}

/// What the verifier extracts from one prompt.
#[derive(Debug, Default)]
struct Analysis {
    quoted: Vec<String>,
    /// Normalised numbers, IDs, versions, amounts (sorted multiset).
    numbers: Vec<String>,
    negations: usize,
    calendar: BTreeSet<String>,
    /// Lower-cased capitalised words, acronyms and camel-case names not at a sentence start.
    entities: BTreeSet<String>,
    /// Every word, lower-cased (to let "paris" match the entity "Paris").
    lower_words: BTreeSet<String>,
    question_kind: BTreeSet<&'static str>,
    /// Asymmetric preposition -> the stemmed content word it governs.
    governed: BTreeMap<String, String>,
    /// Stemmed content words.
    content: BTreeSet<String>,
    /// Stem -> the word as written (lower-cased), for spelling comparisons.
    surface: BTreeMap<String, String>,
    /// Stems of every word, stop words included (for opposites like "good"/"bad").
    stems: BTreeSet<String>,
}

impl Analysis {
    fn written<'s>(&'s self, stem: &'s str) -> &'s str {
        self.surface.get(stem).map_or(stem, String::as_str)
    }

    fn of(text: &str) -> Self {
        let mut out = Analysis::default();
        let (quoted, rest) = split_quotes(text);
        out.quoted = quoted;

        let mut pending_prep: Option<&'static str> = None;
        let mut sentence_start = true;
        // (lower-cased word, is a named entity)
        let mut words: Vec<(String, bool)> = Vec::new();
        for raw in rest.split_whitespace() {
            let ends_sentence = raw.ends_with(['.', '?', '!', ':', ';']);
            let token = raw.trim_matches(|c: char| !c.is_alphanumeric() && !"$€£%#".contains(c));
            let token = token.trim_end_matches(['.', ',']);
            if token.is_empty() {
                sentence_start = sentence_start || ends_sentence;
                continue;
            }
            if token.chars().any(|c| c.is_ascii_digit()) {
                let mut extra = Vec::new();
                push_number(token, &mut out.numbers, &mut extra);
                words.extend(extra.into_iter().map(|w| (w, false)));
            } else {
                for part in token.split(['-', '/', '_']) {
                    let part = part.trim_matches(|c: char| !c.is_alphanumeric());
                    if part.is_empty() {
                        continue;
                    }
                    let core = strip_possessive(part);
                    let entity = is_entity(core, sentence_start);
                    if entity {
                        out.entities.insert(core.to_lowercase());
                    }
                    words.extend(
                        expand_word(&core.to_lowercase())
                            .into_iter()
                            .map(|w| (w, entity)),
                    );
                    sentence_start = false;
                }
                for c in token.chars().filter(|c| "$€£".contains(*c)) {
                    words.push((currency(c).to_owned(), false));
                }
            }
            sentence_start = ends_sentence;
        }

        let mut previous = "";
        for (word, entity) in &words {
            let w = word.as_str();
            let prev = std::mem::replace(&mut previous, w);
            out.lower_words.insert(word.clone());
            out.stems.insert(stem(word));
            if let Some(n) = number_word(w) {
                out.numbers.push(n.to_string());
                continue;
            }
            if NEGATIONS.contains(&w) {
                out.negations += 1;
                continue;
            }
            if let Some(k) = QUESTION_KINDS.iter().find(|k| **k == w) {
                out.question_kind.insert(k);
                continue;
            }
            // "what time" asks when.
            if prev == "what" && matches!(w, "time" | "date") {
                out.question_kind.insert("when");
                continue;
            }
            if let Some(p) = DIRECTION_PREPS.iter().find(|p| **p == w) {
                pending_prep = Some(p);
                continue;
            }
            // Named entities are content even when they look like function words ("Go").
            if !entity && STOP_WORDS.contains(&w) {
                continue;
            }
            let stem = canonical(w);
            if CALENDAR.contains(&w) {
                out.calendar.insert(w.to_owned());
            }
            if let Some(p) = pending_prep.take() {
                out.governed
                    .entry(p.to_owned())
                    .or_insert_with(|| stem.clone());
            }
            out.surface
                .entry(stem.clone())
                .or_insert_with(|| word.clone());
            out.content.insert(stem);
        }
        out.numbers.sort();
        out
    }
}

/// Cardinal number words ("one" is left out: it is as often a pronoun or "a").
fn number_word(w: &str) -> Option<u32> {
    const WORDS: &[&str] = &[
        "zero",
        "one",
        "two",
        "three",
        "four",
        "five",
        "six",
        "seven",
        "eight",
        "nine",
        "ten",
        "eleven",
        "twelve",
        "thirteen",
        "fourteen",
        "fifteen",
        "sixteen",
        "seventeen",
        "eighteen",
        "nineteen",
        "twenty",
    ];
    const TENS: &[(&str, u32)] = &[
        ("thirty", 30),
        ("forty", 40),
        ("fifty", 50),
        ("sixty", 60),
        ("seventy", 70),
        ("eighty", 80),
        ("ninety", 90),
        ("hundred", 100),
        ("thousand", 1000),
        ("million", 1_000_000),
        ("billion", 1_000_000_000),
        ("dozen", 12),
        ("twice", 2),
        ("double", 2),
        ("half", 2),
    ];
    if w == "one" {
        return None;
    }
    WORDS
        .iter()
        .position(|x| *x == w)
        .map(|i| i as u32)
        .or_else(|| TENS.iter().find(|(x, _)| *x == w).map(|(_, n)| *n))
}

/// Pull out "double", “curly” and `backtick` quoted spans; single quotes are apostrophes too
/// often to trust.
fn split_quotes(text: &str) -> (Vec<String>, String) {
    let mut quoted = Vec::new();
    let mut rest = String::with_capacity(text.len());
    let mut current: Option<(char, String)> = None;
    for c in text.chars() {
        match &mut current {
            Some((close, buf)) => {
                if c == *close {
                    quoted.push(buf.split_whitespace().collect::<Vec<_>>().join(" "));
                    rest.push(' ');
                    current = None;
                } else {
                    buf.push(c);
                }
            }
            None => match c {
                '"' => current = Some(('"', String::new())),
                '“' => current = Some(('”', String::new())),
                '`' => current = Some(('`', String::new())),
                _ => rest.push(c),
            },
        }
    }
    // An unclosed quote is ordinary text.
    if let Some((_, buf)) = current {
        rest.push(' ');
        rest.push_str(&buf);
    }
    quoted.sort();
    (quoted, rest)
}

/// A token with digits: a number (1,000 -> 1000), a number with a unit (8pm, 2kg, 15%),
/// a version (1.2.3) or an ID (BA117, ORD-58213): all must match exactly.
fn push_number(token: &str, numbers: &mut Vec<String>, words: &mut Vec<String>) {
    let lower = token.to_lowercase();
    let lower = lower.trim_start_matches('#');
    let (symbol, body) = match lower.chars().next() {
        Some(c @ ('$' | '€' | '£')) => (Some(c), &lower[c.len_utf8()..]),
        _ => (None, lower),
    };
    if let Some(c) = symbol {
        words.push(currency(c).to_owned());
    }
    let digits_end = body
        .find(|c: char| !(c.is_ascii_digit() || c == ',' || c == '.' || c == ':'))
        .unwrap_or(body.len());
    let (num, unit) = body.split_at(digits_end);
    let is_plain = !num.is_empty() && num.starts_with(|c: char| c.is_ascii_digit());
    if is_plain && (unit.is_empty() || UNITS.contains(&unit)) {
        // Thousands separators go; a decimal comma or point stays.
        let num = if num.contains(',') && num.split(',').skip(1).all(|g| g.len() == 3) {
            num.replace(',', "")
        } else {
            num.to_owned()
        };
        let num = match unit {
            "st" | "nd" | "rd" | "th" => num,
            "" => num,
            u => {
                words.push(unit_word(u).to_owned());
                num
            }
        };
        numbers.push(num);
    } else {
        numbers.push(lower.to_owned());
    }
    numbers.sort();
}

fn currency(c: char) -> &'static str {
    match c {
        '$' => "usd",
        '€' => "eur",
        _ => "gbp",
    }
}

fn unit_word(u: &str) -> &str {
    match u {
        "%" => "percent",
        "k" => "thousand",
        "h" | "hr" | "hrs" => "hour",
        "min" | "mins" => "minute",
        _ => u,
    }
}

const UNITS: &[&str] = &[
    "st", "nd", "rd", "th", "am", "pm", "%", "k", "m", "kg", "g", "mg", "lb", "lbs", "oz", "km",
    "mi", "cm", "mm", "ml", "l", "gb", "mb", "kb", "tb", "h", "hr", "hrs", "min", "mins", "s",
    "ms", "x", "d", "w", "y", "yr", "yrs", "c", "f",
];

fn strip_possessive(s: &str) -> &str {
    s.strip_suffix("'s")
        .or_else(|| s.strip_suffix("’s"))
        .or_else(|| s.strip_suffix('\''))
        .unwrap_or(s)
}

fn is_entity(word: &str, sentence_start: bool) -> bool {
    let mut chars = word.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let rest: Vec<char> = chars.collect();
    let upper_inside = rest.iter().any(|c| c.is_uppercase());
    let all_upper = word
        .chars()
        .filter(|c| c.is_alphabetic())
        .all(char::is_uppercase);
    if word == "I" || word.contains('\'') || word.contains('’') {
        return false;
    }
    // Acronyms (≥2 letters) and camelCase names count anywhere; Capitalised words only
    // inside a sentence.
    (all_upper && word.chars().count() >= 2)
        || upper_inside
        || (first.is_uppercase() && !sentence_start)
}

/// Lower-cased word -> words: contractions expanded, currency names folded.
fn expand_word(w: &str) -> Vec<String> {
    let w = w.replace('’', "'");
    if let Some((_, expansion)) = CONTRACTIONS.iter().find(|(c, _)| *c == w) {
        return expansion.split(' ').map(str::to_owned).collect();
    }
    if let Some(base) = w.strip_suffix("n't") {
        let base = match base {
            "ca" => "can",
            "wo" => "will",
            "sha" => "shall",
            b => b,
        };
        return vec![base.to_owned(), "not".to_owned()];
    }
    let base = w
        .split_once('\'')
        .map_or(w.as_str(), |(head, _)| head)
        .to_owned();
    let folded = match base.as_str() {
        "dollar" | "dollars" | "usd" => "usd",
        "euro" | "euros" | "eur" => "eur",
        "pound" | "pounds" | "gbp" if base != "pound" || w == "gbp" => "gbp",
        _ => base.as_str(),
    };
    vec![folded.to_owned()]
}

/// Stem and fold synonyms: the form content words are compared in.
fn canonical(w: &str) -> String {
    static FOLD: OnceLock<HashMap<String, String>> = OnceLock::new();
    let fold = FOLD.get_or_init(|| {
        let mut map = HashMap::new();
        for group in SYNONYMS {
            let head = group.first().map_or_else(String::new, |g| stem(g));
            for g in *group {
                map.entry(stem(g)).or_insert_with(|| head.clone());
            }
        }
        map
    });
    let stem = stem(w);
    fold.get(&stem).cloned().unwrap_or(stem)
}

/// A light English stemmer: inflections and the commonest derivations, so that
/// "watering"/"water", "differ"/"difference", "dehydrated"/"dehydration" meet.
pub(crate) fn stem(w: &str) -> String {
    let mut s = w.to_owned();
    if s.chars().count() <= 3 {
        return s;
    }
    if let Some(base) = s.strip_suffix("ies").filter(|b| b.len() >= 2) {
        s = format!("{base}y");
    } else if let Some(base) = s.strip_suffix("ied").filter(|b| b.len() >= 2) {
        s = format!("{base}y");
    }
    const SUFFIXES: &[&str] = &[
        "ization", "isation", "ational", "fulness", "iveness", "ousness", "ations", "ation",
        "ition", "ments", "ment", "ences", "ence", "ances", "ance", "ness", "ingly", "ings", "ing",
        "edly", "ers", "ed", "ly", "es", "s",
    ];
    for suffix in SUFFIXES {
        if let Some(base) = s.strip_suffix(suffix) {
            // Keep at least three letters and a vowel in the stem.
            if base.chars().count() >= 3 && base.chars().any(|c| "aeiouy".contains(c)) {
                // "ss" ending is not a plural ("process", "class").
                if *suffix == "s"
                    && (base.ends_with('s') || base.ends_with('u') || base.ends_with('i'))
                {
                    continue;
                }
                s = base.to_owned();
                break;
            }
        }
    }
    // Undouble a final consonant ("running" -> "runn" -> "run") and drop a final e.
    let bytes = s.as_bytes();
    let n = bytes.len();
    if n >= 4 && bytes[n - 1] == bytes[n - 2] && !b"aeiouls".contains(&bytes[n - 1]) {
        s.pop();
    }
    if s.len() >= 4 && s.ends_with('e') {
        s.pop();
    }
    s
}

/// Spelling variants and typos: same word if the edit is small for the word's length.
fn same_word(a: &str, b: &str, min_len: usize) -> bool {
    let (la, lb) = (a.chars().count(), b.chars().count());
    if la.min(lb) < min_len || !a.is_ascii() || !b.is_ascii() {
        return false;
    }
    // Typos and spelling variants keep the first letter (ethanol/methanol are not variants).
    if a.as_bytes().first() != b.as_bytes().first() {
        return false;
    }
    let d = damerau(a.as_bytes(), b.as_bytes());
    match d {
        0 => true,
        // One edit: always for long words; for short ones only the harmless kinds
        // (vowel change, doubled letter, swapped neighbours: colour/color, tyre/tire).
        1 => la.min(lb) >= 6 || harmless_edit(a.as_bytes(), b.as_bytes()),
        // Two edits on long words only when they are a swap or vowel-only changes.
        2 => la.min(lb) >= 8 && vowels_only_differ(a, b),
        _ => false,
    }
}

fn harmless_edit(a: &[u8], b: &[u8]) -> bool {
    const SOFT: &[u8] = b"aeiouy";
    if a.len() == b.len() {
        let diffs: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
        match diffs.as_slice() {
            [i] => {
                (SOFT.contains(&a[*i]) && SOFT.contains(&b[*i]))
                    || matches!(
                        (a[*i], b[*i]),
                        (b's', b'z') | (b'z', b's') | (b'c', b's') | (b's', b'c')
                    )
            }
            // Adjacent transposition.
            [i, j] => *j == i + 1 && a[*i] == b[*j] && a[*j] == b[*i],
            _ => false,
        }
    } else {
        let (long, short) = if a.len() > b.len() { (a, b) } else { (b, a) };
        let i = (0..short.len())
            .find(|&i| long[i] != short[i])
            .unwrap_or(short.len());
        let removed = long[i];
        SOFT.contains(&removed)
            || (i > 0 && long[i - 1] == removed)
            || long.get(i + 1) == Some(&removed)
    }
}

fn vowels_only_differ(a: &str, b: &str) -> bool {
    let consonants = |s: &str| {
        s.chars()
            .filter(|c| !"aeiouy".contains(*c))
            .collect::<String>()
    };
    consonants(a) == consonants(b)
}

/// Optimal string alignment distance.
fn damerau(a: &[u8], b: &[u8]) -> usize {
    let (n, m) = (a.len(), b.len());
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    if let Some(first) = d.first_mut() {
        for (j, cell) in first.iter_mut().enumerate() {
            *cell = j;
        }
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[n][m]
}

/// Opposites among differing content words: the same stem under the two prefixes of one
/// pair (safe/unsafe, enable/disable, encrypt/decrypt, upload/download, include/exclude).
fn prefix_antonyms(a: &str, b: &str) -> bool {
    // (pair index, side, remainder) for every way a word splits into prefix + remainder.
    let forms = |w: &str| -> Vec<(usize, usize, String)> {
        let mut out = Vec::new();
        for (i, pair) in PREFIX_PAIRS.iter().enumerate() {
            for (side, prefix) in pair.iter().enumerate() {
                if let Some(rest) = w.strip_prefix(prefix) {
                    if rest.len() >= 3 {
                        out.push((i, side, rest.to_owned()));
                    }
                }
            }
        }
        out
    };
    let fb = forms(b);
    forms(a).iter().any(|(i, side, rest)| {
        fb.iter()
            .any(|(j, side_b, rest_b)| i == j && side != side_b && rest == rest_b)
    })
}

/// A known pair of opposites with one word on each side only ("pass"/"fail", "good"/"bad").
fn lexical_antonym(a: &BTreeSet<String>, b: &BTreeSet<String>) -> Option<(String, String)> {
    static STEMMED: OnceLock<Vec<(String, String)>> = OnceLock::new();
    let pairs = STEMMED.get_or_init(|| ANTONYMS.iter().map(|(x, y)| (stem(x), stem(y))).collect());
    pairs.iter().find_map(|(x, y)| {
        let one_way = |p: &BTreeSet<String>, q: &BTreeSet<String>, x: &String, y: &String| {
            p.contains(x) && !p.contains(y) && q.contains(y) && !q.contains(x)
        };
        if one_way(a, b, x, y) {
            Some((x.clone(), y.clone()))
        } else if one_way(a, b, y, x) {
            Some((y.clone(), x.clone()))
        } else {
            None
        }
    })
}

/// Prefix pairs: (positive, negative). A bare word against its negative-prefixed form is an
/// antonym ("safe"/"unsafe"); so are the two prefixes of one pair ("encrypt"/"decrypt").
const PREFIX_PAIRS: &[[&str; 2]] = &[
    ["", "un"],
    ["", "non"],
    ["", "dis"],
    ["", "in"],
    ["", "im"],
    ["", "il"],
    ["", "ir"],
    ["", "anti"],
    ["", "mis"],
    ["en", "dis"],
    ["en", "de"],
    ["in", "ex"],
    ["in", "de"],
    ["im", "ex"],
    ["up", "down"],
    ["over", "under"],
    ["pre", "post"],
    ["in", "out"],
    ["inc", "exc"],
];

/// Common English opposites (general vocabulary, not tied to any data set).
const ANTONYMS: &[(&str, &str)] = &[
    ("good", "bad"),
    ("better", "worse"),
    ("best", "worst"),
    ("allow", "forbid"),
    ("allow", "deny"),
    ("allow", "block"),
    ("allow", "prohibit"),
    ("permit", "forbid"),
    ("accept", "decline"),
    ("accept", "reject"),
    ("accept", "refuse"),
    ("pass", "fail"),
    ("succeed", "fail"),
    ("success", "failure"),
    ("win", "lose"),
    ("increase", "decrease"),
    ("increase", "reduce"),
    ("raise", "lower"),
    ("add", "remove"),
    ("add", "delete"),
    ("create", "delete"),
    ("create", "destroy"),
    ("start", "stop"),
    ("start", "end"),
    ("start", "finish"),
    ("begin", "end"),
    ("keep", "stop"),
    ("keep", "remove"),
    ("open", "close"),
    ("on", "off"),
    ("buy", "sell"),
    ("push", "pull"),
    ("true", "false"),
    ("yes", "no"),
    ("hot", "cold"),
    ("warm", "cold"),
    ("fast", "slow"),
    ("cheap", "expensive"),
    ("high", "low"),
    ("long", "short"),
    ("big", "small"),
    ("large", "small"),
    ("early", "late"),
    ("first", "last"),
    ("private", "public"),
    ("internal", "external"),
    ("send", "receive"),
    ("ascend", "descend"),
    ("ascending", "descending"),
    ("left", "right"),
    ("north", "south"),
    ("east", "west"),
    ("men", "women"),
    ("man", "woman"),
    ("male", "female"),
    ("boy", "girl"),
    ("before", "after"),
    ("above", "below"),
    ("more", "less"),
    ("more", "fewer"),
    ("most", "least"),
    ("maximum", "minimum"),
    ("max", "min"),
    ("strong", "weak"),
    ("easy", "hard"),
    ("easy", "difficult"),
    ("light", "dark"),
    ("light", "heavy"),
    ("love", "hate"),
    ("safe", "dangerous"),
    ("positive", "negative"),
    ("plus", "minus"),
    ("old", "new"),
    ("old", "young"),
    ("rich", "poor"),
    ("wet", "dry"),
    ("full", "empty"),
    ("input", "output"),
    ("upper", "lower"),
    ("inside", "outside"),
    ("arrive", "depart"),
    ("arrival", "departure"),
    ("join", "leave"),
    ("show", "hide"),
    ("attach", "detach"),
    ("borrow", "lend"),
    ("profit", "loss"),
    ("credit", "debit"),
    ("deposit", "withdraw"),
    ("income", "expense"),
    ("asleep", "awake"),
    ("legal", "illegal"),
    ("healthy", "unhealthy"),
    ("include", "exclude"),
    ("import", "export"),
    ("import", "exported"),
    ("enable", "disable"),
    ("connect", "disconnect"),
    ("follow", "unfollow"),
    ("subscribe", "unsubscribe"),
    ("lock", "unlock"),
    ("install", "uninstall"),
    ("encrypt", "decrypt"),
    ("encode", "decode"),
    ("compress", "decompress"),
    ("upload", "download"),
    ("upgrade", "downgrade"),
    ("minimum", "maximum"),
    ("gain", "lose"),
    ("gain", "loss"),
    ("hire", "fire"),
    ("sunrise", "sunset"),
    ("agree", "disagree"),
    ("like", "dislike"),
    ("with", "without"),
    ("can", "cannot"),
    ("always", "never"),
    ("everyone", "nobody"),
    ("remember", "forget"),
    ("find", "lose"),
    ("save", "spend"),
    ("save", "discard"),
    ("include", "omit"),
    ("online", "offline"),
    ("present", "absent"),
    ("win", "loss"),
    ("ahead", "behind"),
    ("forward", "backward"),
    ("import", "export"),
    ("native", "foreign"),
    ("domestic", "international"),
    ("inbound", "outbound"),
    ("incoming", "outgoing"),
];

/// Small groups of everyday synonyms folded to the first word (general vocabulary).
const SYNONYMS: &[&[&str]] = &[
    &["often", "frequently"],
    &["big", "large"],
    &["small", "little", "tiny"],
    &["begin", "start"],
    &["buy", "purchase"],
    &["car", "automobile"],
    &["child", "kid"],
    &["children", "kids"],
    &["gift", "present"],
    &["fix", "repair"],
    &["error", "mistake"],
    &["quick", "fast", "rapid"],
    &["quickly", "fast", "rapidly"],
    &["usual", "typical", "normal"],
    &["help", "assist"],
    &["choose", "pick", "select"],
    &["answer", "reply", "respond"],
    &["correct", "right"],
    &["cost", "price"],
    &["maybe", "perhaps"],
    &["photo", "picture"],
    &["movie", "film"],
    &["refrigerator", "fridge"],
    &["television", "tv"],
    &["telephone", "phone"],
    &["website", "site"],
    &["email", "e-mail", "mail"],
    &["delete", "erase"],
    &["difference", "differ", "different"],
];

/// Words that negate (or avoid) what follows. Their count must have the same parity.
const NEGATIONS: &[&str] = &[
    "not",
    "no",
    "never",
    "without",
    "none",
    "nothing",
    "nobody",
    "nowhere",
    "neither",
    "nor",
    "cannot",
    "avoid",
    "avoiding",
    "avoids",
    "prevent",
    "prevents",
    "preventing",
    "unable",
    "lack",
    "lacks",
    "lacking",
    "refuse",
];

/// Question words that name the kind of answer; what/how/which/why are interchangeable
/// enough in paraphrases to be left out.
const QUESTION_KINDS: &[&str] = &["who", "whom", "whose", "where", "when"];

/// Prepositions whose object has a role that swaps when the direction swaps.
const DIRECTION_PREPS: &[&str] = &[
    "from", "to", "into", "than", "toward", "towards", "onto", "versus",
];

/// Weekdays, months, relative days, parts of the day and seasons: must match exactly. (Units such
/// as "week" or "year" are ordinary content words: "a week" and "seven days" may agree.)
const CALENDAR: &[&str] = &[
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "weekend",
    "weekday",
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "today",
    "tonight",
    "tomorrow",
    "yesterday",
    "morning",
    "afternoon",
    "evening",
    "night",
    "noon",
    "midnight",
    "spring",
    "summer",
    "autumn",
    "winter",
    "am",
    "pm",
    "daily",
    "weekly",
    "monthly",
    "yearly",
    "annual",
    "hourly",
];

/// Contractions (with and without the apostrophe) and their expansions.
const CONTRACTIONS: &[(&str, &str)] = &[
    ("what's", "what"),
    ("whats", "what"),
    ("how's", "how"),
    ("where's", "where"),
    ("who's", "who"),
    ("when's", "when"),
    ("that's", "that"),
    ("thats", "that"),
    ("it's", "it"),
    ("i'm", "i"),
    ("im", "i"),
    ("i've", "i"),
    ("ive", "i"),
    ("i'd", "i"),
    ("i'll", "i will"),
    ("you're", "you"),
    ("youre", "you"),
    ("we're", "we"),
    ("they're", "they"),
    ("let's", "let"),
    ("lets", "let"),
    ("cant", "can not"),
    ("dont", "do not"),
    ("doesnt", "does not"),
    ("didnt", "did not"),
    ("isnt", "is not"),
    ("arent", "are not"),
    ("wasnt", "was not"),
    ("werent", "were not"),
    ("wont", "will not"),
    ("wouldnt", "would not"),
    ("shouldnt", "should not"),
    ("couldnt", "could not"),
    ("havent", "have not"),
    ("hasnt", "has not"),
    ("hadnt", "had not"),
    ("aint", "is not"),
];

/// Function words, framing verbs ("tell me", "explain", "I need to") and fillers: they do not
/// change which answer fits.
const STOP_WORDS: &[&str] = &[
    // articles, determiners, quantifiers
    "a",
    "an",
    "the",
    "this",
    "that",
    "these",
    "those",
    "some",
    "any",
    "all",
    "every",
    "each",
    "one",
    "ones",
    "such",
    "much",
    "many",
    "several",
    "own",
    "other",
    "another",
    "same",
    "there",
    "here",
    "whatever",
    "else",
    "something",
    "anything",
    "everything",
    "thing",
    "things",
    // pronouns
    "i",
    "me",
    "my",
    "mine",
    "myself",
    "you",
    "your",
    "yours",
    "yourself",
    "we",
    "us",
    "our",
    "ours",
    "he",
    "him",
    "his",
    "she",
    "her",
    "hers",
    "it",
    "its",
    "itself",
    "they",
    "them",
    "their",
    "theirs",
    "someone",
    "somebody",
    "anyone",
    "anybody",
    "one's",
    // auxiliaries and modals
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "am",
    "do",
    "does",
    "did",
    "doing",
    "done",
    "have",
    "has",
    "had",
    "having",
    "can",
    "could",
    "will",
    "would",
    "shall",
    "should",
    "may",
    "might",
    "must",
    "ought",
    // wh-words that do not fix the kind of answer, conjunctions, prepositions
    "what",
    "which",
    "how",
    "why",
    "whether",
    "if",
    "and",
    "or",
    "but",
    "so",
    "because",
    "as",
    "of",
    "in",
    "on",
    "at",
    "by",
    "for",
    "with",
    "about",
    "via",
    "per",
    "up",
    "out",
    "off",
    "within",
    "through",
    "across",
    "upon",
    "then",
    "too",
    "also",
    "very",
    "between",
    "among",
    "during",
    "until",
    "till",
    "along",
    "throughout",
    // framing and filler
    "please",
    "pls",
    "plz",
    "thanks",
    "thank",
    "hi",
    "hello",
    "hey",
    "ok",
    "okay",
    "kindly",
    "just",
    "really",
    "actually",
    "basically",
    "exactly",
    "simply",
    "quite",
    "bit",
    "little",
    "usually",
    "typically",
    "generally",
    "normally",
    "currently",
    "possible",
    "possibly",
    "tell",
    "explain",
    "describe",
    "know",
    "wonder",
    "wondering",
    "want",
    "wanna",
    "need",
    "like",
    "let",
    "give",
    "show",
    "help",
    "make",
    "makes",
    "made",
    "get",
    "gets",
    "got",
    "go",
    "going",
    "look",
    "looking",
    "seem",
    "try",
    "trying",
    "able",
    "way",
    "ways",
    "step",
    "steps",
    "method",
    "methods",
    "instructions",
    "guide",
    "info",
    "information",
    "details",
    "detail",
    "question",
    "idea",
    "ideas",
    "kind",
    "sort",
    "example",
    "work",
    "works",
    "mean",
    "means",
    "meaning",
    "best",
    "good",
    "right",
    "proper",
    "properly",
    "correct",
    "correctly",
    "easiest",
    "easy",
    "simple",
    "simplest",
    "quick",
    "quickly",
];

/// Two sorted multisets -> (only in a, only in b).
fn multiset_diff(a: &[String], b: &[String]) -> (Vec<String>, Vec<String>) {
    let mut only_a = a.to_vec();
    let mut only_b = Vec::new();
    for x in b {
        if let Some(i) = only_a.iter().position(|y| y == x) {
            only_a.remove(i);
        } else {
            only_b.push(x.clone());
        }
    }
    (only_a, only_b)
}

fn set_diff<T: Ord + ToString>(a: &BTreeSet<T>, b: &BTreeSet<T>) -> (Vec<String>, Vec<String>) {
    (
        a.difference(b).map(ToString::to_string).collect(),
        b.difference(a).map(ToString::to_string).collect(),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn v(a: &str, b: &str, cos: f32) -> Verdict {
        verify(a, b, cos, &VerifyConfig::default())
    }

    fn rejects(a: &str, b: &str) -> RejectReason {
        match v(a, b, 0.97) {
            Verdict::Reject(r) => r,
            Verdict::Accept => panic!("accepted look-alike: {a:?} vs {b:?}"),
        }
    }

    fn accepts(a: &str, b: &str, cos: f32) {
        assert_eq!(v(a, b, cos), Verdict::Accept, "{a:?} vs {b:?}");
    }

    #[test]
    fn near_repeats_are_accepted() {
        accepts(
            "How do I rotate an SSH key?",
            "how do i rotate an ssh key",
            0.98,
        );
        accepts(
            "Whats the colour of a ripe mango",
            "What's the color of a ripe mango?",
            0.96,
        );
        accepts(
            "Could you please summarise the GDPR?",
            "Summarize the GDPR.",
            0.93,
        );
        accepts(
            "Hey, how do I sharpen a kitchen knife?",
            "How do I sharpen a kitchen knife",
            0.97,
        );
        accepts(
            "how do I cancel my subscribtion",
            "How do I cancel my subscription?",
            0.95,
        );
    }

    #[test]
    fn numbers_ids_and_amounts_must_match() {
        assert!(matches!(
            rejects("Where is parcel 77120?", "Where is parcel 77210?"),
            RejectReason::NumberMismatch { .. }
        ));
        assert!(matches!(
            rejects("Is Node 20 still supported?", "Is Node 18 still supported?"),
            RejectReason::NumberMismatch { .. }
        ));
        assert!(matches!(
            rejects("Split a $90 dinner bill", "Split a $120 dinner bill"),
            RejectReason::NumberMismatch { .. }
        ));
        assert!(matches!(
            rejects("What changed in v2.3.1?", "What changed in v2.3.2?"),
            RejectReason::NumberMismatch { .. }
        ));
        accepts("Convert 1,000 yen to USD", "convert 1000 yen to usd", 0.97);
        accepts("Wake me at 7am", "Wake me at 7 am", 0.97);
    }

    #[test]
    fn negation_and_antonyms_are_rejected() {
        assert_eq!(
            rejects(
                "Should I water succulents daily?",
                "Shouldn't I water succulents daily?"
            ),
            RejectReason::NegationMismatch
        );
        assert!(matches!(
            rejects("How do I mute a Zoom call?", "How do I unmute a Zoom call?"),
            RejectReason::Antonym { .. }
        ));
        assert!(matches!(
            rejects(
                "How do I import contacts into Outlook?",
                "How do I export contacts from Outlook?"
            ),
            RejectReason::Antonym { .. } | RejectReason::DirectionMismatch { .. }
        ));
        assert!(matches!(
            rejects(
                "Is raw milk legal in Canada?",
                "Is raw milk illegal in Canada?"
            ),
            RejectReason::Antonym { .. }
        ));
        assert!(matches!(
            rejects(
                "Why is my battery charging slowly?",
                "Why is my battery charging fast?"
            ),
            RejectReason::Substitution { .. } | RejectReason::Antonym { .. }
        ));
        assert_eq!(
            rejects("How can I sleep well?", "How can I avoid sleeping well?"),
            RejectReason::NegationMismatch
        );
    }

    #[test]
    fn entities_and_swaps_are_rejected() {
        assert!(matches!(
            rejects(
                "How far is Lisbon from Porto?",
                "How far is Lisbon from Faro?"
            ),
            RejectReason::EntityMismatch { .. }
        ));
        assert!(matches!(
            rejects(
                "how do i sort a list in kotlin",
                "how do i sort a list in scala"
            ),
            RejectReason::Substitution { .. }
        ));
        assert!(matches!(
            rejects("Who wrote the novel?", "Where was the novel written?"),
            RejectReason::QuestionKindMismatch { .. }
        ));
        accepts(
            "how far is lisbon from porto",
            "How far is Lisbon from Porto?",
            0.98,
        );
    }

    #[test]
    fn direction_swaps_are_rejected() {
        assert!(matches!(
            rejects(
                "Train times from Leeds to York",
                "Train times from York to Leeds"
            ),
            RejectReason::DirectionMismatch { .. }
        ));
        assert!(matches!(
            rejects(
                "Is tea healthier than coffee?",
                "Is coffee healthier than tea?"
            ),
            RejectReason::DirectionMismatch { .. }
        ));
        accepts(
            "Train times from Leeds to York",
            "Train times to York from Leeds",
            0.97,
        );
    }

    #[test]
    fn dates_and_times_must_match() {
        assert!(matches!(
            rejects("What's on TV tonight?", "What's on TV tomorrow?"),
            RejectReason::DateMismatch { .. }
        ));
        assert!(matches!(
            rejects("Book a dentist in March", "Book a dentist in May"),
            RejectReason::DateMismatch { .. } | RejectReason::EntityMismatch { .. }
        ));
    }

    #[test]
    fn narrower_or_broader_questions_are_rejected() {
        assert!(matches!(
            rejects("How do I make bread?", "How do I make sourdough bread?"),
            RejectReason::ScopeMismatch { .. }
        ));
        assert!(matches!(
            rejects(
                "Tips for running a marathon in hot weather",
                "Tips for running a marathon"
            ),
            RejectReason::ScopeMismatch { .. }
        ));
    }

    #[test]
    fn rewordings_depend_on_cosine() {
        let a = "How long does it take to thaw a frozen turkey?";
        let b = "How many hours should a frozen turkey defrost for?";
        assert!(v(a, b, 0.95).is_accept(), "{}", v(a, b, 0.95));
        assert!(!v(a, b, 0.70).is_accept());
    }

    #[test]
    fn quoted_strings_must_match() {
        assert!(matches!(
            rejects("What does \"ENOENT\" mean?", "What does \"EACCES\" mean?"),
            RejectReason::QuotedMismatch { .. }
        ));
    }

    #[test]
    fn reasons_display_for_the_admin_api() {
        let r = rejects("Where is parcel 77120?", "Where is parcel 77210?");
        assert_eq!(r.to_string(), "numbers differ: [77120] vs [77210]");
        assert_eq!(
            Verdict::Reject(RejectReason::NegationMismatch).to_string(),
            "reject: one prompt is negated, the other is not"
        );
    }

    #[test]
    fn stemmer_meets_inflections() {
        assert_eq!(stem("watering"), stem("water"));
        assert_eq!(stem("running"), stem("run"));
        assert_eq!(stem("processes"), stem("process"));
        assert_eq!(stem("difference"), stem("differ"));
    }
}
