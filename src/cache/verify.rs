//! Look-alike verification (owned by the verify work).
