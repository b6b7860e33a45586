//! How many realtime sockets each key holds open, for `max_sockets_per_key` and the
//! `sluice_realtime_sockets` gauge.
//!
//! One count per process (sockets are per process too); a [`SocketSlot`] is a socket's place
//! in it and gives it back when dropped, whatever way the socket ends.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::LazyLock;

/// Open sockets by key id.
static OPEN: LazyLock<Mutex<HashMap<String, usize>>> = LazyLock::new(Default::default);

/// One open socket of a key; dropping it closes its place in the count.
#[derive(Debug)]
pub struct SocketSlot {
    key_id: String,
}

/// Takes a place for one more socket of `key_id`, unless it already holds `max`.
pub fn open_sockets(key_id: &str, max: usize) -> Option<SocketSlot> {
    let mut open = OPEN.lock();
    let n = open.entry(key_id.to_string()).or_default();
    if *n >= max {
        return None;
    }
    *n += 1;
    metrics::gauge!(super::SOCKETS).increment(1.0);
    Some(SocketSlot {
        key_id: key_id.to_string(),
    })
}

/// Sockets `key_id` holds open now.
pub fn open_count(key_id: &str) -> usize {
    OPEN.lock().get(key_id).copied().unwrap_or(0)
}

impl Drop for SocketSlot {
    fn drop(&mut self) {
        let mut open = OPEN.lock();
        if let Some(n) = open.get_mut(&self.key_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.key_id);
            }
        }
        metrics::gauge!(super::SOCKETS).decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_key_and_frees_on_drop() {
        let key = "sockets-test-key";
        let a = open_sockets(key, 2);
        let b = open_sockets(key, 2);
        assert!(a.is_some() && b.is_some());
        assert!(
            open_sockets(key, 2).is_none(),
            "third socket over the limit"
        );
        assert!(open_sockets("sockets-test-other", 2).is_some());
        drop(a);
        assert_eq!(open_count(key), 1);
        let c = open_sockets(key, 2);
        assert!(c.is_some());
        drop((b, c));
        assert_eq!(open_count(key), 0);
    }
}
