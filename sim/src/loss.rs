//! Link loss models and the seeded random stream of each directed link.
//!
//! Guarantees: a directed link's stream depends only on the run's seed and the link's two
//! ends ([`link_seed`]), so what one link draws (its k-th frame's loss, duplication, jitter,
//! reordering) does not depend on the traffic of any other link; a change that alters
//! traffic on one link leaves every other link's draws, and the run's fault schedule,
//! where they were.
//!
//! Two loss models, chosen per link by [`crate::NetConfig::loss_burst`]:
//! - uniform (Bernoulli): `loss_burst` 0 or 1; each copy is lost with probability `loss`,
//!   independently of the others (one `gen_bool(loss)` draw per copy, as before bursts
//!   existed);
//! - bursty (the simple two-state Gilbert model, also called Gilbert–Elliott): `loss_burst`
//!   above 1. The link is Good (drops nothing) or Bad (drops every copy). Before each copy
//!   it may change state, then the state decides:
//!
//!   ```text
//!   P(bad -> good) = 1 / burst
//!   P(good -> bad) = loss / (burst × (1 − loss))
//!   ```
//!
//!   The stationary share of Bad is `P(g→b) / (P(g→b) + P(b→g)) = loss`, so the mean loss
//!   is `loss`; a stay in Bad lasts a geometric number of copies with mean `1 / P(b→g) =
//!   burst`, so the mean burst of consecutive losses is `burst`. `P(good -> bad)` is capped
//!   at 1 (reached when `loss ≥ burst / (burst + 1)`; the mean loss is then lower than
//!   asked). A chain starts in its stationary distribution (its first copy draws Bad with
//!   probability `loss`, and the state decides it), so a short stream loses `loss` on
//!   average too, not less; a link whose loss is 0 draws nothing and starts afresh when its
//!   loss comes back.

use rand::Rng;
use ringlab_ring::NodeId;

/// What a directed link's stream is seeded with, beside the run's seed and its ends.
pub const LINK_STREAM: u64 = 0x11AC_5EED_0000_0001;

/// Returns one step of splitmix64 (Steele, Lea and Flood 2014): a bijective mixing of
/// `x`, so seeds that differ in one bit give unrelated streams.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Returns the seed of the directed link `from -> to`'s stream:
/// `splitmix64(seed ^ LINK_STREAM ^ (from << 16 | to))` (node ids are below 2^16).
pub fn link_seed(seed: u64, from: NodeId, to: NodeId) -> u64 {
    splitmix64(seed ^ LINK_STREAM ^ (u64::from(from) << 16 | u64::from(to)))
}

/// The Gilbert–Elliott state of one directed link.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gilbert {
    /// Whether the link is in its Bad (dropping) state.
    pub bad: bool,
    /// Whether the chain has drawn its first state (Bad with probability `loss`: it starts
    /// in its stationary distribution, so a short stream loses `loss` on average too).
    pub started: bool,
}

impl Gilbert {
    /// Decides whether the next copy is lost, for mean loss `loss` and mean burst `burst`
    /// (copies; ≤ 1: uniform loss, one Bernoulli draw). Draws nothing when `loss` is 0.
    pub fn lost(&mut self, rng: &mut impl Rng, loss: f64, burst: f64) -> bool {
        if loss <= 0.0 {
            *self = Self::default();
            return false;
        }
        if burst <= 1.0 {
            return rng.gen_bool(loss.min(1.0));
        }
        if !self.started {
            self.started = true;
            self.bad = rng.gen_bool(loss.min(1.0));
            return self.bad;
        }
        let flip = if self.bad {
            1.0 / burst
        } else if loss >= 1.0 {
            1.0
        } else {
            (loss / (burst * (1.0 - loss))).min(1.0)
        };
        if rng.gen_bool(flip) {
            self.bad = !self.bad;
        }
        self.bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// Draws `n` decisions and returns (lost share, mean length of a run of losses).
    fn measure(loss: f64, burst: f64, n: usize, seed: u64) -> (f64, f64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut g = Gilbert::default();
        let (mut lost, mut bursts, mut prev) = (0usize, 0usize, false);
        for _ in 0..n {
            let l = g.lost(&mut rng, loss, burst);
            lost += usize::from(l);
            bursts += usize::from(l && !prev);
            prev = l;
        }
        (lost as f64 / n as f64, lost as f64 / bursts.max(1) as f64)
    }

    #[test]
    fn gilbert_elliott_keeps_the_mean_loss_and_the_mean_burst() {
        for (loss, burst) in [(0.1, 5.0), (0.05, 3.0), (0.2, 10.0), (0.01, 2.0)] {
            let (share, mean_burst) = measure(loss, burst, 2_000_000, 7);
            assert!(
                (share - loss).abs() < loss * 0.05,
                "loss {loss} burst {burst}: measured loss {share}"
            );
            assert!(
                (mean_burst - burst).abs() < burst * 0.05,
                "loss {loss} burst {burst}: measured mean burst {mean_burst}"
            );
        }
    }

    #[test]
    fn uniform_loss_is_one_bernoulli_draw_per_copy() {
        for burst in [0.0, 1.0] {
            let mut a = ChaCha8Rng::seed_from_u64(3);
            let mut b = ChaCha8Rng::seed_from_u64(3);
            let mut g = Gilbert::default();
            for _ in 0..10_000 {
                assert_eq!(g.lost(&mut a, 0.1, burst), b.gen_bool(0.1));
            }
        }
        let (share, mean_burst) = measure(0.1, 1.0, 1_000_000, 9);
        assert!((share - 0.1).abs() < 0.005, "{share}");
        // Independent losses: runs of mean 1 / (1 - p).
        assert!((mean_burst - 1.0 / 0.9).abs() < 0.02, "{mean_burst}");
    }

    #[test]
    fn no_loss_draws_nothing_and_leaves_the_bad_state() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let before = rng.clone();
        let mut g = Gilbert {
            bad: true,
            started: true,
        };
        assert!(!g.lost(&mut rng, 0.0, 5.0));
        assert!(!g.bad);
        assert_eq!(rng, before);
    }

    #[test]
    fn link_seeds_differ_per_direction_and_per_seed() {
        let s = [
            link_seed(1, 1, 2),
            link_seed(1, 2, 1),
            link_seed(2, 1, 2),
            link_seed(1, 1, 3),
        ];
        for i in 0..s.len() {
            for j in i + 1..s.len() {
                assert_ne!(s[i], s[j]);
            }
        }
    }
}
