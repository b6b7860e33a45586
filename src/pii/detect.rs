//! The scanner: regex candidates, validation, overlap resolution.
//!
//! Each detector is a loose regex (cheap, linear-time: the `regex` crate never backtracks) plus
//! a check from [`super::validate`] that decides. A [`RegexSet`] over every detector runs once
//! over the text, so a detector whose shape does not occur (no `@`, no digit groups, no key
//! prefix) costs nothing more. A numeric detector (phone, card, SSN, IPv4) that can match then
//! searches only the short runs of digits and separators long enough to hold its match, found
//! by one byte loop, instead of the whole prompt. Word boundaries are ASCII (`(?-u:\b)`): a Unicode `\b`
//! would push the regex engine off its DFA onto a much slower one for non-ASCII prompts.

use super::validate;
use regex::{Regex, RegexBuilder, RegexSet, RegexSetBuilder};
use serde::{Deserialize, Serialize, Serializer};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// A category of personal or secret data.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PiiKind {
    /// E-mail address.
    Email,
    /// Telephone number.
    Phone,
    /// Payment card number (Luhn-valid, card network prefix).
    Card,
    /// International bank account number (mod-97 valid).
    Iban,
    /// US social security number.
    Ssn,
    /// IPv4 or IPv6 address.
    IpAddress,
    /// API key, token or private key.
    Secret,
    /// A custom pattern from configuration, by its kind name.
    Custom(Arc<str>),
}

impl PiiKind {
    /// The built-in kinds, in declaration order.
    pub const BUILTIN: [PiiKind; 7] = [
        PiiKind::Email,
        PiiKind::Phone,
        PiiKind::Card,
        PiiKind::Iban,
        PiiKind::Ssn,
        PiiKind::IpAddress,
        PiiKind::Secret,
    ];

    /// The kind's name in config, logs and metrics (`email`, `ip`, or the custom name).
    pub fn as_str(&self) -> &str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Card => "card",
            PiiKind::Iban => "iban",
            PiiKind::Ssn => "ssn",
            PiiKind::IpAddress => "ip",
            PiiKind::Secret => "secret",
            PiiKind::Custom(name) => name,
        }
    }

    /// The label inside placeholders: `EMAIL`, `IP`, or the custom name upper-cased.
    pub fn label(&self) -> String {
        self.as_str().to_ascii_uppercase()
    }

    /// The built-in kind with this name, if any.
    pub fn builtin(name: &str) -> Option<PiiKind> {
        PiiKind::BUILTIN.into_iter().find(|k| k.as_str() == name)
    }

    /// Tie-break between overlapping findings of equal length: lower wins. Secrets first (a key
    /// is worse to leak than anything it contains), custom next (the operator asked for it),
    /// then the kinds whose checks are strongest.
    fn specificity(&self) -> u8 {
        match self {
            PiiKind::Secret => 0,
            PiiKind::Custom(_) => 1,
            PiiKind::Iban => 2,
            PiiKind::Card => 3,
            PiiKind::Ssn => 4,
            PiiKind::Email => 5,
            PiiKind::IpAddress => 6,
            PiiKind::Phone => 7,
        }
    }
}

impl fmt::Display for PiiKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for PiiKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What the gateway does with PII found in a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PiiPolicy {
    /// No scanning.
    #[default]
    Off,
    /// Scan and report the kinds found; the request goes on unchanged.
    Detect,
    /// Replace values with placeholders upstream and restore them in the answer.
    Mask,
    /// Refuse requests containing PII.
    Block,
}

impl PiiPolicy {
    /// The policy's config name.
    pub fn as_str(self) -> &'static str {
        match self {
            PiiPolicy::Off => "off",
            PiiPolicy::Detect => "detect",
            PiiPolicy::Mask => "mask",
            PiiPolicy::Block => "block",
        }
    }
}

impl fmt::Display for PiiPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PiiPolicy {
    type Err = PiiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Ok(PiiPolicy::Off),
            "detect" => Ok(PiiPolicy::Detect),
            "mask" => Ok(PiiPolicy::Mask),
            "block" => Ok(PiiPolicy::Block),
            _ => Err(PiiError::UnknownPolicy(s.to_string())),
        }
    }
}

/// Why a scanner could not be built or a policy parsed.
#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    /// A custom pattern does not compile (or is too large).
    #[error("custom PII pattern #{index} ({kind}) is not a valid regex: {source}")]
    InvalidPattern {
        /// Position in the custom list.
        index: usize,
        /// Its kind name.
        kind: String,
        /// The regex error.
        source: regex::Error,
    },
    /// A custom pattern matches the empty string, so it would match everywhere.
    #[error("custom PII pattern #{index} ({kind}) matches the empty string")]
    EmptyMatch {
        /// Position in the custom list.
        index: usize,
        /// Its kind name.
        kind: String,
    },
    /// A custom kind name is unusable in placeholders or shadows a built-in kind.
    #[error("custom PII pattern #{index}: kind name '{kind}' {reason}")]
    InvalidKind {
        /// Position in the custom list.
        index: usize,
        /// The rejected name.
        kind: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A policy name other than off, detect, mask, block.
    #[error("unknown PII policy '{0}' (expected off, detect, mask or block)")]
    UnknownPolicy(String),
}

/// One value found in a text: its kind and byte range.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Finding {
    /// What it is.
    pub kind: PiiKind,
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset just past the last byte.
    pub end: usize,
}

impl Finding {
    /// The value in the text it was found in (empty if `text` is another string).
    pub fn value<'a>(&self, text: &'a str) -> &'a str {
        text.get(self.start..self.end).unwrap_or("")
    }
}

/// How a detector's candidates are confirmed.
#[derive(Debug, Clone, Copy)]
enum Check {
    Email,
    Phone,
    Card,
    Iban,
    Ssn,
    Ipv4,
    Ipv6,
    Token,
    Jwt,
    Pem,
    Custom,
}

struct Detector {
    kind: PiiKind,
    check: Check,
    re: Regex,
}

impl Check {
    /// For detectors whose matches consist only of [`NUMERIC_BYTES`]: the fewest digits a
    /// match has. They search numeric runs holding that many digits, not the whole text.
    fn min_digits(self) -> Option<usize> {
        match self {
            Check::Phone => Some(8),
            Check::Card => Some(13),
            Check::Ssn => Some(9),
            Check::Ipv4 => Some(4),
            _ => None,
        }
    }
}

/// Whether a byte can be part of a numeric detector's match: `0-9 +().-`.
const NUMERIC_BYTES: [bool; 256] = {
    let mut t = [false; 256];
    let chars = b"0123456789 +().-";
    let mut i = 0;
    while i < chars.len() {
        t[chars[i] as usize] = true;
        i += 1;
    }
    t
};

/// Maximal runs of [`NUMERIC_BYTES`] with at least 4 digits, as `(start, end, digits)`, widened
/// by one character on each side so that word boundaries and the glue checks see the same
/// neighbours as in the whole text.
fn numeric_windows(text: &str) -> Vec<(usize, usize, usize)> {
    let b = text.as_bytes();
    let numeric = |i: usize| b.get(i).is_some_and(|c| NUMERIC_BYTES[usize::from(*c)]);
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if !numeric(i) {
            i += 1;
            continue;
        }
        let start = i;
        let mut digits = 0;
        while numeric(i) {
            digits += usize::from(b.get(i).is_some_and(u8::is_ascii_digit));
            i += 1;
        }
        if digits >= 4 {
            let ws = text
                .get(..start)
                .and_then(|h| h.char_indices().next_back())
                .map_or(start, |(j, _)| j);
            let we = text
                .get(i..)
                .and_then(|t| t.chars().next())
                .map_or(i, |c| i + c.len_utf8());
            out.push((ws, we, digits));
        }
    }
    out
}

/// Longest custom kind name: placeholders stay short enough to hold back in streams.
const MAX_KIND_LEN: usize = 32;
/// Compiled-size cap per custom regex, so a config typo cannot eat memory.
const CUSTOM_SIZE_LIMIT: usize = 1 << 20;

/// The built-in detectors: kind, check, pattern.
fn builtin() -> Vec<(PiiKind, Check, &'static str)> {
    vec![
        (
            PiiKind::Email,
            Check::Email,
            r"(?i-u)\b[a-z0-9][a-z0-9._%+\-]*@[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]{0,61}[a-z0-9])?)*\.[a-z]{2,24}\b",
        ),
        (
            PiiKind::Phone,
            Check::Phone,
            concat!(
                r"(?-u)",
                // International: +CC then 1-6 groups, optional area code in parentheses.
                r"\+[1-9]\d{0,3}(?:[ .\-]?(?:\(\d{1,4}\)|\d{1,5})){1,6}",
                // North American: (555) 123-4567, 555-123-4567, 555.123.4567.
                r"|\(\d{3}\)[ .\-]?\d{3}[ .\-]\d{4}\b",
                r"|\b\d{3}[.\-]\d{3}[.\-]\d{4}\b",
                // National with a trunk 0: 020 7946 0958, 07700 900123.
                // Spaces only: dashed 04xx-xxxx-xxxx is as often a part number.
                r"|\b0\d{2,4} \d{3,4}(?: ?\d{3,4})?\b",
            ),
        ),
        (
            PiiKind::Card,
            Check::Card,
            concat!(
                r"(?-u)\b(?:\d{13,19}",
                r"|\d{4}[ \-]\d{4}[ \-]\d{4}[ \-]\d{4}",
                r"|\d{4}[ \-]\d{4}[ \-]\d{4}[ \-]\d{1,3}",
                r"|\d{4}[ \-]\d{6}[ \-]\d{4,5})\b",
            ),
        ),
        (
            PiiKind::Iban,
            Check::Iban,
            r"(?-u)\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b",
        ),
        (PiiKind::Ssn, Check::Ssn, r"(?-u)\b\d{3}-\d{2}-\d{4}\b"),
        (
            PiiKind::IpAddress,
            Check::Ipv4,
            r"(?-u)\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b",
        ),
        (
            PiiKind::IpAddress,
            Check::Ipv6,
            r"(?i-u)[0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7}(?:\.\d{1,3}\.\d{1,3}\.\d{1,3})?",
        ),
        (
            PiiKind::Secret,
            Check::Token,
            concat!(
                r"(?-u)\b(?:sk-[A-Za-z0-9_\-]{20,}",
                r"|gh[pousr]_[A-Za-z0-9]{36}",
                r"|github_pat_[A-Za-z0-9_]{22,}",
                r"|xox[abpr]-[A-Za-z0-9\-]{10,}",
                r"|[sr]k_live_[A-Za-z0-9]{16,}",
                r"|AIza[A-Za-z0-9_\-]{35}",
                r"|A[KS]IA[A-Z0-9]{16})",
            ),
        ),
        (
            PiiKind::Secret,
            Check::Jwt,
            r"(?-u)\beyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*",
        ),
        (
            PiiKind::Secret,
            Check::Pem,
            concat!(
                r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----",
                r"(?:(?s:.)*?-----END [A-Z0-9 ]*PRIVATE KEY-----|[A-Za-z0-9+/=:,\-\s]*)",
            ),
        ),
    ]
}

/// The PII scanner: built once from the custom patterns, shared by every request.
pub struct Scanner {
    /// One pattern per detector, same order: which detectors can match at all.
    set: RegexSet,
    detectors: Vec<Detector>,
}

impl fmt::Debug for Scanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kinds: Vec<&str> = self.detectors.iter().map(|d| d.kind.as_str()).collect();
        f.debug_struct("Scanner")
            .field("detectors", &kinds)
            .finish()
    }
}

impl Scanner {
    /// Builds the built-in detectors plus custom `(kind, regex)` pairs from config.
    pub fn new(custom: &[(String, String)]) -> Result<Scanner, PiiError> {
        let mut detectors = Vec::new();
        for (kind, check, pattern) in builtin() {
            // Built-in patterns are constants covered by tests; a failure here is a bug, but it
            // is reported as an error rather than a panic.
            let re = Regex::new(pattern).map_err(|source| PiiError::InvalidPattern {
                index: usize::MAX,
                kind: kind.as_str().to_string(),
                source,
            })?;
            detectors.push(Detector { kind, check, re });
        }
        for (index, (kind, pattern)) in custom.iter().enumerate() {
            let kind_name = validate_kind_name(index, kind)?;
            let re = RegexBuilder::new(pattern)
                .size_limit(CUSTOM_SIZE_LIMIT)
                .build()
                .map_err(|source| PiiError::InvalidPattern {
                    index,
                    kind: kind.clone(),
                    source,
                })?;
            if re.is_match("") {
                return Err(PiiError::EmptyMatch {
                    index,
                    kind: kind.clone(),
                });
            }
            detectors.push(Detector {
                kind: PiiKind::Custom(Arc::from(kind_name)),
                check: Check::Custom,
                re,
            });
        }
        let set = RegexSetBuilder::new(detectors.iter().map(|d| d.re.as_str()))
            .size_limit(CUSTOM_SIZE_LIMIT * (custom.len() + 10))
            .build()
            .map_err(|source| PiiError::InvalidPattern {
                index: usize::MAX,
                kind: "set".to_string(),
                source,
            })?;
        Ok(Scanner { set, detectors })
    }

    /// Every PII value in `text`, in order, non-overlapping.
    pub fn scan(&self, text: &str) -> Vec<Finding> {
        if text.is_empty() {
            return Vec::new();
        }
        let mut found = Vec::new();
        let mut windows = None;
        for idx in self.set.matches(text).iter() {
            let Some(d) = self.detectors.get(idx) else {
                continue;
            };
            let Some(min) = d.check.min_digits() else {
                d.find(text, 0, text, &mut found);
                continue;
            };
            for &(ws, we, digits) in windows.get_or_insert_with(|| numeric_windows(text)).iter() {
                if digits >= min {
                    if let Some(window) = text.get(ws..we) {
                        d.find(text, ws, window, &mut found);
                    }
                }
            }
        }
        resolve_overlaps(found)
    }

    /// The kinds present in `text`.
    pub fn kinds(&self, text: &str) -> BTreeSet<PiiKind> {
        self.scan(text).into_iter().map(|f| f.kind).collect()
    }

    /// The kinds present in the text of a chat request (content strings, text parts and tool
    /// call arguments), for the detect and block policies.
    pub fn request_kinds(&self, req: &crate::wire::ChatRequest) -> BTreeSet<PiiKind> {
        let mut kinds = BTreeSet::new();
        super::mask::for_each_text(req, |t| kinds.extend(self.kinds(t)));
        kinds
    }
}

impl Detector {
    /// Confirmed matches in `hay`, which starts at byte `offset` of `text`.
    fn find(&self, text: &str, offset: usize, hay: &str, found: &mut Vec<Finding>) {
        for m in self.re.find_iter(hay) {
            let (start, end) = (offset + m.start(), offset + m.end());
            if let Some((start, end)) = confirm(self.check, text, start, end) {
                if start < end {
                    found.push(Finding {
                        kind: self.kind.clone(),
                        start,
                        end,
                    });
                }
            }
        }
    }
}

fn validate_kind_name(index: usize, kind: &str) -> Result<String, PiiError> {
    let bad = |reason| PiiError::InvalidKind {
        index,
        kind: kind.to_string(),
        reason,
    };
    let name = kind.trim().to_ascii_lowercase();
    if name.is_empty() || name.len() > MAX_KIND_LEN {
        return Err(bad("must have 1 to 32 characters"));
    }
    // Placeholders are `[LABEL_N]`: the restorer parses only these characters.
    if !name.starts_with(|c: char| c.is_ascii_lowercase())
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(bad(
            "must start with a letter and use only letters, digits and '_'",
        ));
    }
    if PiiKind::builtin(&name).is_some() {
        return Err(bad("is a built-in kind"));
    }
    Ok(name)
}

fn prev_byte(text: &str, i: usize) -> Option<u8> {
    i.checked_sub(1)
        .and_then(|j| text.as_bytes().get(j).copied())
}

/// Whether a number at `start..end` is part of a longer token: `1.2.3.4.5`, `ID-555-123-4567`,
/// `x4111...`, `2024-555-123-4567`. Letters, digits, or a separator followed by a digit on
/// either side make it a fragment of something else.
fn glued(text: &str, start: usize, end: usize, seps: &[u8]) -> bool {
    let b = text.as_bytes();
    let before = prev_byte(text, start);
    let before2 = start.checked_sub(2).and_then(|j| b.get(j).copied());
    let after = b.get(end).copied();
    let after2 = b.get(end + 1).copied();
    let word = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_');
    let digit = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_digit());
    let sep = |c: Option<u8>| c.is_some_and(|c| seps.contains(&c));
    word(before) || word(after) || (sep(before) && digit(before2)) || (sep(after) && digit(after2))
}

/// Whether the word just before `start` says the number is a version, not an address.
fn version_context(text: &str, start: usize) -> bool {
    let head = text.get(..start).unwrap_or("");
    let head = head.trim_end_matches([' ', ':', '=']);
    let word_start = head
        .rfind(|c: char| !c.is_ascii_alphabetic())
        .map_or(0, |i| i + 1);
    let word = head.get(word_start..).unwrap_or("").to_ascii_lowercase();
    matches!(
        word.as_str(),
        "v" | "ver" | "version" | "versions" | "release" | "build" | "firmware" | "rev"
    )
}

/// Validates a regex candidate and returns the (possibly narrowed) byte range to report.
fn confirm(check: Check, text: &str, start: usize, end: usize) -> Option<(usize, usize)> {
    let cand = text.get(start..end)?;
    match check {
        Check::Email => {
            let (local, domain) = cand.split_once('@')?;
            let ok = !local.starts_with('.')
                && !local.ends_with('.')
                && !local.contains("..")
                && local.len() <= 64
                && domain.len() <= 253;
            // `user@host.com@evil`: an address glued to another `@` is not one address.
            let glued_at =
                text.as_bytes().get(end) == Some(&b'@') || prev_byte(text, start) == Some(b'@');
            // The regex is ASCII; a local part that began with non-ASCII letters (`müller@`)
            // is extended back so no part of the address is left unmasked.
            let start = text
                .get(..start)
                .unwrap_or("")
                .char_indices()
                .rev()
                .take_while(|(_, c)| c.is_alphanumeric() || "._%+-".contains(*c))
                .last()
                .map_or(start, |(i, _)| i);
            (ok && !glued_at).then_some((start, end))
        }
        Check::Phone => confirm_phone(text, start, end),
        Check::Card => {
            (!glued(text, start, end, b".-/,") && validate::card(cand)).then_some((start, end))
        }
        Check::Iban => {
            if prev_byte(text, start).is_some_and(|b| b.is_ascii_alphanumeric()) {
                return None;
            }
            validate::iban(cand).map(|len| (start, start + len))
        }
        Check::Ssn => {
            (!glued(text, start, end, b".-/") && validate::ssn(cand)).then_some((start, end))
        }
        Check::Ipv4 => (!glued(text, start, end, b".")
            && validate::ipv4(cand)
            && !version_context(text, start))
        .then_some((start, end)),
        Check::Ipv6 => {
            let b = text.as_bytes();
            let edge = |c: Option<u8>| {
                c.is_some_and(|c| c.is_ascii_alphanumeric() || c == b':' || c == b'_')
            };
            let before = prev_byte(text, start);
            let after = b.get(end).copied();
            // A full stop after the address ends a sentence; one before it or one followed by a
            // digit makes it part of something longer.
            let dotted = before == Some(b'.')
                || (after == Some(b'.') && b.get(end + 1).is_some_and(u8::is_ascii_digit));
            (!edge(before) && !edge(after) && !dotted && validate::ipv6(cand))
                .then_some((start, end))
        }
        Check::Token => {
            let after = text.as_bytes().get(end).copied();
            // Fixed-length keys (AKIA..., AIza..., ghp_...) must end where the token ends.
            if after.is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_') {
                return None;
            }
            let ok = if let Some(body) = cand.strip_prefix("sk-") {
                validate::mixed_token(body)
            } else if cand.starts_with("xox") {
                validate::digit_count(cand) >= 4
            } else {
                true
            };
            ok.then_some((start, end))
        }
        Check::Jwt => validate::jwt(cand).then_some((start, end)),
        Check::Pem => Some((start, start + cand.trim_end().len())),
        Check::Custom => Some((start, end)),
    }
}

/// Phone candidates: 8 to 15 digits (E.164), not part of a longer number, not a price or a
/// range. A greedy international match that swallowed a following number is retried without
/// its last group.
fn confirm_phone(text: &str, start: usize, mut end: usize) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    let open = b.get(start) == Some(&b'(');
    let intl = b.get(start) == Some(&b'+');
    if (open || intl) && prev_byte(text, start).is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    for _ in 0..4 {
        let cand = text.get(start..end)?;
        let digits = validate::digit_count(cand);
        let glued_here = if open || intl {
            let after = b.get(end).copied();
            let after2 = b.get(end + 1).copied();
            after.is_some_and(|c| c.is_ascii_alphanumeric())
                || (matches!(after, Some(b'.' | b'-' | b'/'))
                    && after2.is_some_and(|c| c.is_ascii_digit()))
        } else {
            glued(text, start, end, b".-/")
        };
        let consistent = if open || intl {
            true
        } else {
            // 555-123-4567 or 555.123.4567, not 555-123.4567.
            let seps: Vec<u8> = cand.bytes().filter(|c| !c.is_ascii_digit()).collect();
            seps.windows(2).all(|w| w[0] == w[1])
        };
        if (8..=15).contains(&digits) && !glued_here && consistent {
            return Some((start, end));
        }
        if !intl || digits < 8 {
            return None;
        }
        // Drop the last group (and its separator) and try again.
        let cut = cand.rfind([' ', '.', '-'])?;
        if cut == 0 {
            return None;
        }
        end = start + cut;
        if text.as_bytes().get(end - 1) == Some(&b'(') {
            return None;
        }
    }
    None
}

/// Keeps the longest finding where findings overlap (ties: the more specific kind, then the
/// earlier start) and returns them in text order. Deterministic whatever the detector order.
fn resolve_overlaps(mut found: Vec<Finding>) -> Vec<Finding> {
    if found.len() < 2 {
        return found;
    }
    found.sort_by(|a, b| {
        (b.end - b.start)
            .cmp(&(a.end - a.start))
            .then(a.kind.specificity().cmp(&b.kind.specificity()))
            .then(a.start.cmp(&b.start))
            .then(a.kind.cmp(&b.kind))
    });
    // Kept findings by start; they never overlap, so only the last one starting before a
    // candidate's end can overlap it.
    let mut kept: BTreeMap<usize, Finding> = BTreeMap::new();
    for f in found {
        let overlaps = kept
            .range(..f.end)
            .next_back()
            .is_some_and(|(_, k)| k.end > f.start);
        if !overlaps {
            kept.insert(f.start, f);
        }
    }
    kept.into_values().collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn scanner() -> Scanner {
        Scanner::new(&[]).unwrap()
    }

    /// `(kind, value)` of every finding.
    fn found(s: &Scanner, text: &str) -> Vec<(String, String)> {
        s.scan(text)
            .iter()
            .map(|f| (f.kind.as_str().to_string(), f.value(text).to_string()))
            .collect()
    }

    fn one(kind: &str, value: &str) -> Vec<(String, String)> {
        vec![(kind.to_string(), value.to_string())]
    }

    #[test]
    fn names_labels_policies() {
        assert_eq!(PiiKind::IpAddress.as_str(), "ip");
        assert_eq!(PiiKind::IpAddress.label(), "IP");
        assert_eq!(
            PiiKind::Custom(Arc::from("employee_id")).label(),
            "EMPLOYEE_ID"
        );
        assert_eq!(PiiKind::builtin("card"), Some(PiiKind::Card));
        assert_eq!("Mask".parse::<PiiPolicy>().unwrap(), PiiPolicy::Mask);
        assert_eq!(" block ".parse::<PiiPolicy>().unwrap(), PiiPolicy::Block);
        assert!("redact".parse::<PiiPolicy>().is_err());
        let p: PiiPolicy = serde_json::from_str("\"detect\"").unwrap();
        assert_eq!(p, PiiPolicy::Detect);
        assert_eq!(serde_json::to_string(&PiiPolicy::Off).unwrap(), "\"off\"");
        assert_eq!(serde_json::to_string(&PiiKind::Ssn).unwrap(), "\"ssn\"");
        assert_eq!(PiiPolicy::default(), PiiPolicy::Off);
    }

    #[test]
    fn emails() {
        let s = scanner();
        assert_eq!(
            found(&s, "Write to jane.doe+news@example.co.uk."),
            one("email", "jane.doe+news@example.co.uk")
        );
        assert_eq!(
            found(&s, "<a.b_c@mail-server.example.org>"),
            one("email", "a.b_c@mail-server.example.org")
        );
        for neg in [
            "the @ sign",
            "@username on twitter",
            "user@localhost",
            "a..b@example.com",
            "foo@bar",
            "email me at name(at)example.com",
        ] {
            assert!(found(&s, neg).is_empty(), "{neg}");
        }
    }

    #[test]
    fn phones() {
        let s = scanner();
        for p in [
            "+44 20 7946 0958",
            "(555) 123-4567",
            "555-123-4567",
            "+1-202-555-0143",
            "555.123.4567",
            "+33 1 23 45 67 89",
            "+49 (30) 1234567",
            "+14155552671",
            "020 7946 0958",
        ] {
            assert_eq!(
                found(&s, &format!("Call {p} today")),
                one("phone", p),
                "{p}"
            );
        }
        // A greedy match swallowing a year is cut back.
        assert_eq!(
            found(&s, "call +44 20 7946 0958 2024"),
            one("phone", "+44 20 7946 0958")
        );
        for neg in [
            "on 2024-01-15",
            "costs $1,299.99",
            "+1.5% growth",
            "ISBN 978-3-16-148410-0",
            "id 123-456-7890-12",
            "555-123.4567",
            "version 10.2.3",
            "ref 12345",
        ] {
            assert!(found(&s, neg).is_empty(), "{neg}: {:?}", found(&s, neg));
        }
    }

    #[test]
    fn cards_ibans_ssns() {
        let s = scanner();
        assert_eq!(
            found(&s, "card 4111 1111 1111 1111, exp 12/27"),
            one("card", "4111 1111 1111 1111")
        );
        assert_eq!(
            found(&s, "amex 3782-822463-10005"),
            one("card", "3782-822463-10005")
        );
        assert!(found(&s, "order 4111111111111112").is_empty());
        assert!(found(&s, "order 1234567812345670").is_empty());
        assert!(found(&s, "ISBN 9780306406157").is_empty());
        assert_eq!(
            found(&s, "IBAN: GB82 WEST 1234 5698 7654 32 please"),
            one("iban", "GB82 WEST 1234 5698 7654 32")
        );
        assert_eq!(
            found(&s, "to DE89370400440532013000."),
            one("iban", "DE89370400440532013000")
        );
        assert!(found(&s, "GB82WEST12345698765433").is_empty());
        assert_eq!(found(&s, "SSN 123-45-6789"), one("ssn", "123-45-6789"));
        for neg in [
            "SSN 000-12-3456",
            "SSN 666-12-3456",
            "SSN 912-34-5678",
            "SSN 123-00-4567",
            "SSN 123-45-0000",
            "part 123-45-6789-0",
        ] {
            assert!(found(&s, neg).is_empty(), "{neg}");
        }
    }

    #[test]
    fn ip_addresses() {
        let s = scanner();
        assert_eq!(
            found(&s, "host 192.168.1.20 is up"),
            one("ip", "192.168.1.20")
        );
        assert_eq!(
            found(&s, "ping 2001:db8::8a2e:370:7334."),
            one("ip", "2001:db8::8a2e:370:7334")
        );
        assert_eq!(
            found(&s, "mapped ::ffff:192.0.2.1 here"),
            one("ip", "::ffff:192.0.2.1")
        );
        for neg in [
            "999.1.1.1",
            "version 1.2.3.4",
            "v1.2.3.4",
            "release: 10.0.0.1",
            "1.2.3.4.5",
            "Python 3.11.4",
            "at 12:30:45",
            "use std::net::Ipv6Addr;",
            "MAC 00:1a:2b:3c:4d:5e",
            "localhost ::1",
        ] {
            assert!(found(&s, neg).is_empty(), "{neg}: {:?}", found(&s, neg));
        }
    }

    #[test]
    fn secrets() {
        let s = scanner();
        for k in [
            "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z",
            "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0FeDcBa",
            "sk-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4zAb3dEf6hIj9kLm2n",
            "ghp_A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8",
            "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
            "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc",
            "rk_live_51H8abcdEFGHijklMNOPqrst",
            "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
            "AKIAIOSFODNN7EXAMPLE",
            "ASIAY34FZKBOKMUTVV7A",
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        ] {
            assert_eq!(found(&s, &format!("key={k} ok")), one("secret", k), "{k}");
        }
        let pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\nabc+/=\n-----END RSA PRIVATE KEY-----";
        assert_eq!(
            found(&s, &format!("key:\n{pem}\nthanks")),
            one("secret", pem)
        );
        let open = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC";
        assert_eq!(found(&s, &format!("{open}\n\n")), one("secret", open));
        for neg in [
            "sk-learn-compatible-estimators-2024",
            "task-force-alpha-bravo-charlie-delta",
            "AKIA1234",
            "ghp_short",
            "eyJmb28iOiJiYXIifQ.eyJzdWIiOiIxIn0.abc",
            "-----BEGIN PUBLIC KEY-----",
            "AKIAIOSFODNN7EXAMPLEXYZ",
        ] {
            assert!(found(&s, neg).is_empty(), "{neg}: {:?}", found(&s, neg));
        }
    }

    #[test]
    fn custom_patterns() {
        let s = Scanner::new(&[("employee_id".into(), r"\bEMP-\d{6}\b".into())]).unwrap();
        assert_eq!(
            found(&s, "badge EMP-123456 and jane@example.com"),
            vec![
                ("employee_id".to_string(), "EMP-123456".to_string()),
                ("email".to_string(), "jane@example.com".to_string())
            ]
        );
        let e = Scanner::new(&[("a".into(), "x".into()), ("b".into(), "(".into())]).unwrap_err();
        assert!(
            matches!(e, PiiError::InvalidPattern { index: 1, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("#1 (b)"), "{e}");
        let e = Scanner::new(&[("x".into(), "a*".into())]).unwrap_err();
        assert!(matches!(e, PiiError::EmptyMatch { index: 0, .. }), "{e}");
        for bad in ["email", "", "has space", "9lives", "x]"] {
            let e = Scanner::new(&[(bad.into(), "abc".into())]).unwrap_err();
            assert!(matches!(e, PiiError::InvalidKind { .. }), "{bad}: {e}");
        }
    }

    #[test]
    fn overlaps_longest_then_most_specific() {
        let f = |kind, start, end| Finding { kind, start, end };
        let out = resolve_overlaps(vec![
            f(PiiKind::Phone, 0, 12),
            f(PiiKind::Card, 0, 19),
            f(PiiKind::Ssn, 20, 31),
            f(PiiKind::Phone, 20, 31),
            f(PiiKind::IpAddress, 30, 40),
        ]);
        assert_eq!(out, vec![f(PiiKind::Card, 0, 19), f(PiiKind::Ssn, 20, 31)]);
        // Same input in another order, same answer.
        let out2 = resolve_overlaps(vec![
            f(PiiKind::IpAddress, 30, 40),
            f(PiiKind::Phone, 20, 31),
            f(PiiKind::Ssn, 20, 31),
            f(PiiKind::Card, 0, 19),
            f(PiiKind::Phone, 0, 12),
        ]);
        assert_eq!(out, out2);
        // An email containing digits that look like a phone stays one email.
        let s = scanner();
        assert_eq!(
            found(&s, "mail 555-123-4567@example.com now"),
            one("email", "555-123-4567@example.com")
        );
        // A secret wins over the IP/phone-looking pieces inside it.
        let k = "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z";
        assert_eq!(found(&s, k), one("secret", k));
    }

    #[test]
    fn numeric_windows_cover_numbers_only() {
        let t = "é(555) 123-4567é and 12 items, 2024 x 1.2.3.4";
        let w: Vec<&str> = numeric_windows(t)
            .into_iter()
            .map(|(a, b, _)| &t[a..b])
            .collect();
        assert_eq!(w, vec!["é(555) 123-4567é", ", 2024 x", "x 1.2.3.4"]);
        assert!(numeric_windows("no digits here").is_empty());
        assert!(numeric_windows("").is_empty());
    }

    #[test]
    fn non_ascii_and_empty() {
        let s = scanner();
        assert!(s.scan("").is_empty());
        let t = "Grüße an müller@example.de — Tel. +49 30 1234567 ✓";
        let got = found(&s, t);
        assert_eq!(
            got,
            vec![
                ("email".to_string(), "müller@example.de".to_string()),
                ("phone".to_string(), "+49 30 1234567".to_string())
            ]
        );
    }
}
