//! The ring's timers: one enum, one table of deadlines.
//!
//! Each timer has at most one deadline; arming it again replaces the deadline, and the next
//! deadline of the ring is the earliest armed one. Expired timers fire in the enum's order.

/// The protocol's timers (TOCS95 §6 and corosync's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    /// The token (or commit token) did not come back within `token`.
    TokenLoss,
    /// Re-send the last token this node passed on, in case it was lost.
    TokenRetransmit,
    /// Stop holding the token on an idle ring.
    Hold,
    /// Re-send the join in GATHER.
    Join,
    /// Give up waiting for consensus in GATHER.
    Consensus,
    /// The representative's merge-detect period.
    MergeDetect,
}

impl Timer {
    /// Every timer, in the order expired ones fire.
    pub(super) const ALL: [Self; 6] = [
        Self::TokenLoss,
        Self::TokenRetransmit,
        Self::Hold,
        Self::Join,
        Self::Consensus,
        Self::MergeDetect,
    ];
}

/// The deadline of every timer, in ns on the caller's clock.
#[derive(Clone, Debug, Default)]
pub(super) struct TimerTable {
    deadlines: [Option<u64>; Timer::ALL.len()],
}

impl TimerTable {
    /// Arms `t` to fire at `at`, replacing its deadline.
    pub(super) fn arm(&mut self, t: Timer, at: u64) {
        self.deadlines[t as usize] = Some(at);
    }

    /// Disarms `t`.
    pub(super) fn cancel(&mut self, t: Timer) {
        self.deadlines[t as usize] = None;
    }

    /// Disarms every timer.
    pub(super) fn cancel_all(&mut self) {
        self.deadlines = Default::default();
    }

    /// Returns the earliest deadline.
    pub(super) fn next_deadline(&self) -> Option<u64> {
        self.deadlines.iter().flatten().copied().min()
    }

    /// Disarms and returns `t` if its deadline is at or before `now`.
    pub(super) fn expire(&mut self, t: Timer, now: u64) -> bool {
        let slot = &mut self.deadlines[t as usize];
        if slot.is_some_and(|d| d <= now) {
            *slot = None;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_deadline_is_the_earliest_armed_one() {
        let mut t = TimerTable::default();
        assert_eq!(t.next_deadline(), None);
        t.arm(Timer::Join, 50);
        t.arm(Timer::TokenLoss, 30);
        t.arm(Timer::Join, 70);
        assert_eq!(t.next_deadline(), Some(30));
        assert!(!t.expire(Timer::Join, 69));
        assert!(t.expire(Timer::Join, 70));
        assert!(!t.expire(Timer::Join, 70), "an expired timer is disarmed");
        t.cancel(Timer::TokenLoss);
        assert_eq!(t.next_deadline(), None);
        t.arm(Timer::Hold, 1);
        t.cancel_all();
        assert_eq!(t.next_deadline(), None);
    }
}
