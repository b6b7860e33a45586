//! Fake anthropic upstream speaking its real wire format (in progress).
