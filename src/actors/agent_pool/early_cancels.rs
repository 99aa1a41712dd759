//! Cancellations that arrive before their question was taken from the queue: the
//! pool remembers the newest few thousand, and answers such a question by
//! acknowledging it unanswered (its session has already ended the turn).

use std::collections::{HashSet, VecDeque};

use uuid::Uuid;

/// Cancellations remembered for questions not yet taken from the queue.
const REMEMBERED_CANCELS: usize = 4096;

/// The turn ids cancelled before their question arrived, the oldest forgotten
/// first once [`REMEMBERED_CANCELS`] are kept.
#[derive(Debug, Default)]
pub(super) struct EarlyCancels {
    order: VecDeque<Uuid>,
    ids: HashSet<Uuid>,
}

impl EarlyCancels {
    pub(super) fn remember(&mut self, turn_id: Uuid) {
        if !self.ids.insert(turn_id) {
            return;
        }
        if self.order.len() == REMEMBERED_CANCELS
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
        self.order.push_back(turn_id);
    }

    /// Whether `turn_id` was cancelled early; it is forgotten either way.
    pub(super) fn take(&mut self, turn_id: &Uuid) -> bool {
        self.ids.remove(turn_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_is_taken_once() {
        let mut cancels = EarlyCancels::default();
        let turn = Uuid::new_v4();
        cancels.remember(turn);
        assert!(cancels.take(&turn));
        assert!(!cancels.take(&turn));
        assert!(!cancels.take(&Uuid::new_v4()));
    }

    #[test]
    fn the_oldest_are_forgotten_past_the_bound() {
        let mut cancels = EarlyCancels::default();
        let turns: Vec<Uuid> = (0..=REMEMBERED_CANCELS).map(|_| Uuid::new_v4()).collect();
        for turn in &turns {
            cancels.remember(*turn);
        }
        assert!(!cancels.take(&turns[0]), "the oldest is forgotten");
        assert!(cancels.take(&turns[1]));
        assert!(cancels.take(&turns[REMEMBERED_CANCELS]));
        assert!(cancels.ids.len() <= REMEMBERED_CANCELS);
    }
}
