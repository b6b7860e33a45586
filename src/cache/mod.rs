//! Semantic cache: scope, verification, entries.
pub mod verify;
