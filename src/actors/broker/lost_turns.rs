//! Turns the gateway failed because its broker connection was lost. Their
//! questions may still be in the queue, or come back to a worker when its own
//! connection returns; nobody waits for their answers any more. So once the
//! connection is back the gateway publishes a cancellation for each — workers
//! remember one that comes before its question and drop the question unanswered —
//! and, should a worker answer one anyway (its copy of the cancellations was not
//! subscribed yet when the cancellation went out), cancels it again, once for each
//! delivery of the question that speaks.
//!
//! The newest few thousand are remembered; past that, the oldest are forgotten
//! (a forgotten turn costs a worker an answer nobody reads, nothing more).

use std::collections::{HashMap, VecDeque};

use uuid::Uuid;

/// Turns remembered; as many as a worker remembers early cancellations.
const REMEMBERED_LOST_TURNS: usize = 4096;

#[derive(Debug, Default)]
pub(super) struct LostTurns {
    /// Oldest first, to forget in that order.
    order: VecDeque<Uuid>,
    turns: HashMap<Uuid, Lost>,
}

#[derive(Debug, Default)]
struct Lost {
    /// A cancellation is to be published once the connection is back.
    unsent: bool,
    /// The newest delivery of its question that was cancelled after it spoke.
    answered_attempt: u32,
}

impl LostTurns {
    /// `turn_id` was failed for the lost connection: its cancellation waits for
    /// the connection to come back.
    pub(super) fn remember(&mut self, turn_id: Uuid) {
        if let Some(lost) = self.turns.get_mut(&turn_id) {
            lost.unsent = true;
            return;
        }
        if self.order.len() == REMEMBERED_LOST_TURNS
            && let Some(oldest) = self.order.pop_front()
        {
            self.turns.remove(&oldest);
        }
        self.order.push_back(turn_id);
        let lost = Lost {
            unsent: true,
            answered_attempt: 0,
        };
        self.turns.insert(turn_id, lost);
    }

    /// The turns whose cancellation is to be published now; they count as sent.
    pub(super) fn take_unsent(&mut self) -> Vec<Uuid> {
        let mut unsent = Vec::new();
        for turn_id in &self.order {
            if let Some(lost) = self.turns.get_mut(turn_id)
                && lost.unsent
            {
                lost.unsent = false;
                unsent.push(*turn_id);
            }
        }
        unsent
    }

    /// Publishing the cancellation of `turn_id` failed: it is to be sent again.
    pub(super) fn not_sent(&mut self, turn_id: Uuid) {
        if let Some(lost) = self.turns.get_mut(&turn_id) {
            lost.unsent = true;
        }
    }

    /// Whether any cancellation waits to be published.
    #[cfg(test)]
    fn any_unsent(&self) -> bool {
        self.turns.values().any(|lost| lost.unsent)
    }

    /// An answer of delivery `attempt` came for a turn nobody routes; answers
    /// whether to publish a cancellation for it: it is a lost turn whose worker is
    /// still at it (not its end), and the first answer of that delivery seen.
    pub(super) fn answered(&mut self, turn_id: Uuid, attempt: u32, ends_turn: bool) -> bool {
        let Some(lost) = self.turns.get_mut(&turn_id) else {
            return false;
        };
        if ends_turn || attempt <= lost.answered_attempt {
            return false;
        }
        lost.answered_attempt = attempt;
        true
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.turns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancellations_are_sent_once_the_connection_is_back_and_once_each() {
        let mut lost = LostTurns::default();
        let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
        lost.remember(first);
        lost.remember(second);
        assert!(lost.any_unsent());
        assert_eq!(lost.take_unsent(), vec![first, second]);
        assert!(!lost.any_unsent());
        assert_eq!(lost.take_unsent(), Vec::<Uuid>::new());
    }

    #[test]
    fn a_cancellation_that_could_not_be_published_is_sent_again() {
        let mut lost = LostTurns::default();
        let turn = Uuid::new_v4();
        lost.remember(turn);
        assert_eq!(lost.take_unsent(), vec![turn]);
        lost.not_sent(turn);
        assert!(lost.any_unsent());
        assert_eq!(lost.take_unsent(), vec![turn]);
        lost.not_sent(Uuid::new_v4());
        assert!(!lost.any_unsent(), "an unknown turn is not remembered");
    }

    #[test]
    fn a_turn_lost_again_is_cancelled_again() {
        let mut lost = LostTurns::default();
        let turn = Uuid::new_v4();
        lost.remember(turn);
        lost.take_unsent();
        lost.remember(turn);
        assert_eq!(lost.take_unsent(), vec![turn]);
        assert_eq!(lost.len(), 1);
    }

    #[test]
    fn each_delivery_that_answers_anyway_is_cancelled_once() {
        let mut lost = LostTurns::default();
        let turn = Uuid::new_v4();
        lost.remember(turn);
        lost.take_unsent();
        assert!(lost.answered(turn, 2, false));
        assert!(!lost.answered(turn, 2, false), "once per delivery");
        assert!(!lost.answered(turn, 1, false), "an older delivery");
        assert!(
            !lost.answered(turn, 3, true),
            "a delivery that already ended"
        );
        assert!(lost.answered(turn, 3, false));
        assert!(!lost.answered(Uuid::new_v4(), 1, false), "not a lost turn");
    }

    #[test]
    fn the_oldest_are_forgotten_past_the_bound() {
        let mut lost = LostTurns::default();
        let turns: Vec<Uuid> = (0..=REMEMBERED_LOST_TURNS)
            .map(|_| Uuid::new_v4())
            .collect();
        for turn in &turns {
            lost.remember(*turn);
        }
        assert_eq!(lost.len(), REMEMBERED_LOST_TURNS);
        let unsent = lost.take_unsent();
        assert_eq!(unsent.len(), REMEMBERED_LOST_TURNS);
        assert_eq!(unsent[0], turns[1], "the oldest is forgotten");
        assert!(!lost.answered(turns[0], 1, false));
        assert!(lost.answered(turns[REMEMBERED_LOST_TURNS], 1, false));
    }
}
