//! The token's rotation time, measured at every visit, which paces token retransmission
//! (knob `adaptive_token_retransmit`).
//!
//! corosync re-sends a passed token every `token_retransmit` (token / 4.2: 238 ms at the
//! defaults) until it comes back. On a ring whose token goes round in a millisecond, a token
//! lost to a 10% loss on one hop then stalls the whole ring for 238 ms, and at 10% per hop
//! that happens at about every other rotation of a 5-node ring. ringlab re-sends after
//! `RETRANSMIT_ROTATIONS` times the smoothed rotation plus `RETRANSMIT_MARGIN_NS`, bounded
//! by [`RETRANSMIT_MIN_NS`] and `token_retransmit`. The rotation includes the time the token
//! is held on an idle ring, so an idle ring does not re-send a held token more often than
//! corosync does. A token re-sent too early reaches a node that already passed it on and is
//! dropped as a duplicate (its token_seq is not new): only bandwidth is at stake, never order.

/// Least retransmission period: jitter on a real bridge is tens of microseconds to a few
/// milliseconds.
pub(super) const RETRANSMIT_MIN_NS: u64 = 2_000_000;
/// Rotations the token may take before it is re-sent.
const RETRANSMIT_ROTATIONS: u64 = 3;
/// Added to the rotations: scheduling delays on a loaded machine.
const RETRANSMIT_MARGIN_NS: u64 = 1_000_000;

/// The smoothed rotation time of the current ring's token at this node.
#[derive(Debug, Default)]
pub(super) struct Rotation {
    /// When the token last visited this node.
    last_visit: Option<u64>,
    /// Smoothed rotation (an exponentially weighted mean, weight 1/8, like TCP's SRTT).
    smoothed: Option<u64>,
}

impl Rotation {
    /// Notes a visit of the token at `now`.
    pub(super) fn visit(&mut self, now: u64) {
        if let Some(last) = self.last_visit {
            let sample = now.saturating_sub(last);
            self.smoothed = Some(match self.smoothed {
                None => sample,
                Some(s) => s - s / 8 + sample / 8,
            });
        }
        self.last_visit = Some(now);
    }

    /// Returns how long after passing the token to re-send it: `fixed` (corosync's
    /// `token_retransmit`) unless `adaptive`, else a few smoothed rotations, at most `fixed`.
    pub(super) fn retransmit_after(&self, adaptive: bool, fixed: u64) -> u64 {
        match self.smoothed.filter(|_| adaptive) {
            None => fixed,
            Some(s) => s
                .saturating_mul(RETRANSMIT_ROTATIONS)
                .saturating_add(RETRANSMIT_MARGIN_NS)
                .clamp(RETRANSMIT_MIN_NS.min(fixed), fixed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Rotation, RETRANSMIT_MIN_NS};

    const MS: u64 = 1_000_000;

    #[test]
    fn the_period_follows_the_rotation_within_its_bounds() {
        let mut r = Rotation::default();
        assert_eq!(
            r.retransmit_after(true, 238 * MS),
            238 * MS,
            "no rotation measured yet"
        );
        for i in 0..50 {
            r.visit(i * MS);
        }
        // 1 ms rotations: 3 rotations + 1 ms, but never under the floor.
        assert_eq!(r.retransmit_after(true, 238 * MS), 4 * MS);
        let mut quick = Rotation::default();
        for i in 0..50 {
            quick.visit(i * 100_000);
        }
        assert_eq!(quick.retransmit_after(true, 238 * MS), RETRANSMIT_MIN_NS);
        // An idle ring holding its token 180 ms: capped at the fixed period.
        let mut idle = Rotation::default();
        for i in 0..50 {
            idle.visit(i * 181 * MS);
        }
        assert_eq!(idle.retransmit_after(true, 238 * MS), 238 * MS);
        // Not adaptive: corosync's fixed period.
        assert_eq!(r.retransmit_after(false, 238 * MS), 238 * MS);
    }
}
