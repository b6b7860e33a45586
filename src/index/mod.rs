//! HNSW vector index (owned by the index work).
