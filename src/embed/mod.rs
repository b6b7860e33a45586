//! Local embeddings (owned by the embed work).
