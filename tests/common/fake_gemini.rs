//! Fake gemini upstream speaking its real wire format (in progress).
