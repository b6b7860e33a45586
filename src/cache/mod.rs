//! Semantic cache: exact and semantic lookups, verification of look-alikes, write-back.
//!
//! Owns cache decisions and the entry format. It reaches storage only through `store` and the
//! vector index only through `index`; it knows nothing of HTTP or providers.

pub mod calibrate;
pub mod control;
mod engine;
pub mod entry;
pub mod key;
pub mod replay;
pub mod settings;
pub mod verify;

pub use control::CacheControl;
pub use engine::{
    cacheable, Answer, CacheEngine, CacheError, CacheOptions, Candidate, Flight, FlightGuard,
    FlightState, Hit, Lookup,
};
pub use key::{keys, CacheKeys};
pub use settings::CacheSettings;

/// How a request was served with respect to the cache (the `x-sluice-cache` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheOutcome {
    /// Same canonical request seen before.
    HitExact,
    /// A verified semantic neighbour answered.
    HitSemantic,
    /// Waited for an identical in-flight miss.
    HitCoalesced,
    /// Looked up, not found; went upstream.
    Miss,
    /// The cache was not consulted.
    Bypass,
}

impl CacheOutcome {
    /// Header and metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HitExact => "hit-exact",
            Self::HitSemantic => "hit-semantic",
            Self::HitCoalesced => "hit-coalesced",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
        }
    }
}
