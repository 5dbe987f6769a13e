//! Duplicate detection of `ackId`s within one connection, over a bounded window.

use std::collections::{HashSet, VecDeque};

/// Remembers the most recent ack ids of a connection; allocates nothing until first used.
#[derive(Debug)]
pub struct AckDedupe {
    window: usize,
    seen: Option<Box<(HashSet<u64>, VecDeque<u64>)>>,
}

impl AckDedupe {
    /// A dedupe window of `window` ack ids.
    pub fn new(window: usize) -> Self {
        AckDedupe { window, seen: None }
    }

    /// Records `ack_id`; returns false if it was seen before (a duplicate).
    pub fn first_time(&mut self, ack_id: u64) -> bool {
        let (set, order) = &mut **self
            .seen
            .get_or_insert_with(|| Box::new((HashSet::new(), VecDeque::new())));
        if !set.insert(ack_id) {
            return false;
        }
        order.push_back(ack_id);
        if order.len() > self.window
            && let Some(old) = order.pop_front()
        {
            set.remove(&old);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_duplicates_within_the_window() {
        let mut d = AckDedupe::new(2);
        assert!(d.first_time(1));
        assert!(!d.first_time(1));
        assert!(d.first_time(2));
        assert!(d.first_time(3));
        // 1 fell out of the window.
        assert!(d.first_time(1));
    }
}
