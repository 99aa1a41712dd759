//! Which sessions are idle — no connection, no turn — since when, and how many
//! bytes they hold, so that a gateway holding more sessions than
//! `session.max_in_memory` (or idle ones holding more than
//! `session.max_idle_bytes`) lets the least recently used idle ones go first. Plain bookkeeping for the
//! [`SessionRegistry`](super::registry::SessionRegistry); it decides, the registry
//! acts.

use std::collections::{HashMap, VecDeque};

use uuid::Uuid;

/// Idle sessions, oldest idle first.
#[derive(Debug, Default)]
pub struct IdleSessions {
    /// Each session's current idle spell, by the number it was given, and the
    /// bytes the session holds.
    spells: HashMap<Uuid, (u64, usize)>,
    /// The bytes all idle sessions hold.
    bytes: usize,
    /// Spells in the order they began. An entry whose session became active (or
    /// idle again) since is stale and skipped; stale entries are swept when they
    /// outnumber the live ones.
    order: VecDeque<(Uuid, u64)>,
    next_spell: u64,
}

/// Stale entries tolerated before the order is swept, beyond the live ones.
const SWEEP_SLACK: usize = 1024;

impl IdleSessions {
    /// The session holding `bytes` became idle.
    pub fn became_idle(&mut self, session_id: Uuid, bytes: usize) {
        self.no_longer_idle(session_id);
        self.next_spell += 1;
        self.spells.insert(session_id, (self.next_spell, bytes));
        self.bytes += bytes;
        self.order.push_back((session_id, self.next_spell));
        if self.order.len() > 2 * self.spells.len() + SWEEP_SLACK {
            let spells = &self.spells;
            self.order
                .retain(|(id, spell)| spells.get(id).is_some_and(|(s, _)| s == spell));
        }
    }

    /// The session is busy again, or gone.
    pub fn no_longer_idle(&mut self, session_id: Uuid) {
        if let Some((_, bytes)) = self.spells.remove(&session_id) {
            self.bytes -= bytes;
        }
    }

    /// The bytes all idle sessions hold.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// How many sessions are idle.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.spells.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.spells.is_empty()
    }

    /// Takes the session idle the longest, if any is idle.
    pub fn take_oldest(&mut self) -> Option<Uuid> {
        while let Some((session_id, spell)) = self.order.pop_front() {
            if self
                .spells
                .get(&session_id)
                .is_some_and(|(s, _)| *s == spell)
            {
                self.no_longer_idle(session_id);
                return Some(session_id);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::new_v4()).collect()
    }

    #[test]
    fn the_longest_idle_goes_first() {
        let ids = ids(3);
        let mut idle = IdleSessions::default();
        for id in &ids {
            idle.became_idle(*id, 1);
        }
        assert_eq!(idle.len(), 3);
        assert_eq!(idle.take_oldest(), Some(ids[0]));
        assert_eq!(idle.take_oldest(), Some(ids[1]));
        assert_eq!(idle.take_oldest(), Some(ids[2]));
        assert_eq!(idle.take_oldest(), None);
        assert!(idle.is_empty());
    }

    #[test]
    fn a_session_busy_again_is_not_taken_and_idle_again_goes_to_the_back() {
        let ids = ids(3);
        let mut idle = IdleSessions::default();
        for id in &ids {
            idle.became_idle(*id, 1);
        }
        idle.no_longer_idle(ids[0]);
        idle.no_longer_idle(ids[1]);
        idle.became_idle(ids[1], 1);
        assert_eq!(idle.len(), 2);
        assert_eq!(idle.take_oldest(), Some(ids[2]));
        assert_eq!(idle.take_oldest(), Some(ids[1]));
        assert_eq!(idle.take_oldest(), None);
    }

    #[test]
    fn churn_does_not_grow_the_order_without_bound() {
        let id = Uuid::new_v4();
        let mut idle = IdleSessions::default();
        for _ in 0..100_000 {
            idle.became_idle(id, 1);
            idle.no_longer_idle(id);
        }
        assert!(idle.order.len() <= 2 * idle.len() + SWEEP_SLACK + 1);
    }

    #[test]
    fn the_bytes_of_idle_sessions_are_summed() {
        let ids = ids(3);
        let mut idle = IdleSessions::default();
        idle.became_idle(ids[0], 100);
        idle.became_idle(ids[1], 20);
        idle.became_idle(ids[1], 30);
        idle.became_idle(ids[2], 5);
        assert_eq!(idle.bytes(), 135);
        idle.no_longer_idle(ids[2]);
        assert_eq!(idle.bytes(), 130);
        assert_eq!(idle.take_oldest(), Some(ids[0]));
        assert_eq!(idle.bytes(), 30);
    }
}
