//! The ring's knobs, under corosync's names, and their validation.
//!
//! Defaults follow corosync 3 except `token`, which is 1000 ms here (corosync's default before
//! 3.1.0) so that a testbed run recovers in about a second, and `merge`, 40 ms instead of 200
//! (merge detection no longer waits for an idle ring; see `srp`); `token_coefficient` is not applied
//! (the effective token is `token` whatever the node count). Derived knobs follow corosync's
//! formulas when left unset: `token_retransmit = token / (token_retransmits_before_loss_const +
//! 0.2)`, `hold = token_retransmit * 0.8 - 10`, `consensus = 1.2 * token`.
//! [`Config::validate`] returns an error naming the offending knob; every duration, given or
//! derived, is at most [`DURATION_MAX_MS`] (one day), so that its nanoseconds and the deadlines
//! built from it fit in a `u64`.

use serde::{Deserialize, Serialize};

/// Which ordering variant the ring runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Variant {
    /// Totem as in TOCS95: multicast, then pass the token.
    #[default]
    Classic,
    /// The Accelerated Ring (Babay & Amir, ICDCS 2016): update the token for the whole visit,
    /// pass it, then multicast up to `accelerated_window` frames after it.
    Accelerated,
}

/// Ring knobs. Durations are in milliseconds, as in corosync.conf.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Token loss timeout.
    pub token: u64,
    /// Used only to derive `token_retransmit` and `hold`.
    pub token_retransmits_before_loss_const: u32,
    /// Period of token retransmission by the last holder (derived when unset).
    pub token_retransmit: Option<u64>,
    /// How long an idle ring's representative holds the token (derived when unset).
    pub hold: Option<u64>,
    /// Interval between join re-sends.
    pub join: u64,
    /// Time to wait for consensus in GATHER (derived when unset).
    pub consensus: Option<u64>,
    /// Merge-detect interval of an idle ring's representative.
    pub merge: u64,
    /// Rotations with the aru held down by one member before it is excluded.
    pub fail_recv_const: u32,
    /// Rotations without new messages before the token is held.
    pub seqno_unchanged_const: u32,
    /// Most messages per rotation, the whole ring together.
    pub window_size: u32,
    /// Most messages one member may send per token visit (default 50, the window; corosync's
    /// 17 held one sender to a third of it: see the README's knobs).
    pub max_messages: u32,
    /// Times a seq must be seen missing before it is requested.
    pub miss_count_const: u32,
    /// Classic or accelerated ordering.
    pub variant: Variant,
    /// Accelerated variant: most frames multicast after the token has been passed.
    pub accelerated_window: u32,
    /// Largest UDP payload the ring emits, in bytes.
    pub netmtu: usize,
    /// Bound of the send queue, in bytes (ringlab's own knob).
    pub send_queue_bytes: usize,
    /// Reachability checks for asymmetric and partial connectivity (ringlab's own knob,
    /// default on; off is Totem's and corosync's behaviour): a node announces which
    /// processors it could not hear for a whole consensus period, a round gives up on one
    /// processor of every pair that cannot hear each other (the higher id), and a ring does
    /// not start a merge that such a pair would break again. See `srp::reach`.
    #[serde(skip_serializing_if = "is_on")]
    pub reachability: bool,
    /// A join from a processor outside the ring being formed, heard in COMMIT or RECOVERY,
    /// starts a merge with it as soon as the ring is installed, and every join heard then is
    /// held for one join interval and taken when the node next gathers (ringlab's own knob,
    /// default on; off is corosync's: the join is dropped and the joiner waits for its next
    /// join interval, the tail of start → full ring).
    #[serde(skip_serializing_if = "is_on")]
    pub pending_joins: bool,
    /// Re-send a passed token that has not come back after a few measured rotations (at
    /// least 2 ms, at most `token_retransmit`) instead of after `token_retransmit` (ringlab's
    /// own knob, default on; off is corosync's fixed period). Under loss, a lost token then
    /// costs milliseconds instead of 238 ms; a duplicate token is dropped by its receiver.
    /// While a ring is being formed (COMMIT, RECOVERY: no rotation measured yet), every
    /// `join` interval (at most `token_retransmit`).
    #[serde(skip_serializing_if = "is_on")]
    pub adaptive_token_retransmit: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            token: 1000,
            token_retransmits_before_loss_const: 4,
            token_retransmit: None,
            hold: None,
            join: 50,
            consensus: None,
            merge: 40,
            fail_recv_const: 2500,
            seqno_unchanged_const: 30,
            window_size: 50,
            max_messages: 50,
            miss_count_const: 5,
            variant: Variant::Classic,
            accelerated_window: 20,
            netmtu: 1400,
            send_queue_bytes: 4 << 20,
            reachability: true,
            pending_joins: true,
            adaptive_token_retransmit: true,
        }
    }
}

/// ringlab's own on/off knobs are written out only when off, so that results recorded
/// before a knob existed (which ran without it) read back and write back unchanged.
fn is_on(b: &bool) -> bool {
    *b
}

/// A knob with a value the ring cannot run with.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid totem.{knob}: {reason}")]
pub struct ConfigError {
    /// The knob's corosync name.
    pub knob: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// The resolved timing of a validated config, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Token loss timeout.
    pub token: u64,
    /// Token retransmission period.
    pub token_retransmit: u64,
    /// Token hold time.
    pub hold: u64,
    /// Join re-send interval.
    pub join: u64,
    /// Consensus timeout.
    pub consensus: u64,
    /// Merge-detect interval.
    pub merge: u64,
}

const MS: u64 = 1_000_000;

/// The longest duration knob accepted, in ms: one day.
pub const DURATION_MAX_MS: u64 = 86_400_000;

fn too_long(knob: &'static str, ms: u64) -> ConfigError {
    err(
        knob,
        format!("{ms} ms is above one day ({DURATION_MAX_MS} ms)"),
    )
}

fn err(knob: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        knob,
        reason: reason.into(),
    }
}

impl Config {
    /// Returns `token_retransmit` in ms, derived when unset.
    pub fn token_retransmit_ms(&self) -> u64 {
        self.token_retransmit.unwrap_or_else(|| {
            (self.token as f64 / (self.token_retransmits_before_loss_const as f64 + 0.2)) as u64
        })
    }

    /// Returns `hold` in ms, derived when unset.
    pub fn hold_ms(&self) -> u64 {
        self.hold.unwrap_or_else(|| {
            ((self.token_retransmit_ms() as f64 * 0.8) as u64)
                .saturating_sub(10)
                .max(1)
        })
    }

    /// Returns `consensus` in ms, derived when unset.
    pub fn consensus_ms(&self) -> u64 {
        self.consensus.unwrap_or((self.token as f64 * 1.2) as u64)
    }

    /// Checks every knob; returns the resolved timing or an error naming the knob.
    pub fn validate(&self) -> Result<Timing, ConfigError> {
        if self.token == 0 {
            return Err(err("token", "must be at least 1 ms"));
        }
        if self.token > DURATION_MAX_MS {
            return Err(too_long("token", self.token));
        }
        if self.token_retransmits_before_loss_const == 0 {
            return Err(err(
                "token_retransmits_before_loss_const",
                "must be at least 1",
            ));
        }
        let rt = self.token_retransmit_ms();
        if rt == 0 || rt >= self.token {
            return Err(err(
                "token_retransmit",
                format!(
                    "{rt} ms must be at least 1 ms and below token ({} ms)",
                    self.token
                ),
            ));
        }
        let hold = self.hold_ms();
        if hold == 0 || hold >= rt {
            return Err(err(
                "hold",
                format!("{hold} ms must be at least 1 ms and below token_retransmit ({rt} ms)"),
            ));
        }
        if self.join == 0 {
            return Err(err("join", "must be at least 1 ms"));
        }
        let consensus = self.consensus_ms();
        if consensus > DURATION_MAX_MS {
            return Err(too_long("consensus", consensus));
        }
        if consensus <= self.join {
            return Err(err(
                "consensus",
                format!("{consensus} ms must be above join ({} ms)", self.join),
            ));
        }
        if self.merge == 0 {
            return Err(err("merge", "must be at least 1 ms"));
        }
        if self.merge > DURATION_MAX_MS {
            return Err(too_long("merge", self.merge));
        }
        if self.fail_recv_const == 0 {
            return Err(err("fail_recv_const", "must be at least 1"));
        }
        if self.seqno_unchanged_const == 0 {
            return Err(err("seqno_unchanged_const", "must be at least 1"));
        }
        if self.window_size == 0 {
            return Err(err("window_size", "must be at least 1"));
        }
        if self.max_messages == 0 || self.max_messages > self.window_size {
            return Err(err(
                "max_messages",
                format!("must be between 1 and window_size ({})", self.window_size),
            ));
        }
        if self.miss_count_const == 0 {
            return Err(err("miss_count_const", "must be at least 1"));
        }
        if self.accelerated_window > self.window_size {
            return Err(err(
                "accelerated_window",
                format!("must not exceed window_size ({})", self.window_size),
            ));
        }
        if !(256..=65_000).contains(&self.netmtu) {
            return Err(err("netmtu", "must be between 256 and 65000 bytes"));
        }
        let frame_cap = self.netmtu - crate::wire::MCAST_OVERHEAD;
        if self.send_queue_bytes
            < crate::pack::MESSAGE_MAX + crate::pack::MESSAGE_MAX / frame_cap * 64 + 4096
        {
            return Err(err(
                "send_queue_bytes",
                "must hold at least one 1 MiB message with its framing",
            ));
        }
        Ok(Timing {
            token: self.token * MS,
            token_retransmit: rt * MS,
            hold: hold * MS,
            join: self.join * MS,
            consensus: consensus * MS,
            merge: self.merge * MS,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_derived_like_corosync() {
        let t = Config::default().validate().unwrap();
        assert_eq!(t.token_retransmit, 238 * MS);
        assert_eq!(t.hold, 180 * MS);
        assert_eq!(t.consensus, 1200 * MS);
    }

    #[test]
    fn errors_name_the_knob() {
        let c = Config {
            max_messages: 80,
            ..Config::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e.knob, "max_messages");
        assert!(e.to_string().starts_with("invalid totem.max_messages"));
        let c = Config {
            consensus: Some(10),
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().knob, "consensus");
        let c = Config {
            netmtu: 100,
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().knob, "netmtu");
    }

    /// Found by the `node_config` fuzz target: a token of 2^63 ms validated by multiplying it
    /// into nanoseconds, which overflowed (a panic with overflow checks, a wrapped timing
    /// without).
    #[test]
    fn durations_above_a_day_are_refused_not_overflowed() {
        for (knob, c) in [
            (
                "token",
                Config {
                    token: i64::MAX as u64,
                    ..Config::default()
                },
            ),
            (
                "consensus",
                Config {
                    consensus: Some(u64::MAX),
                    ..Config::default()
                },
            ),
            (
                "consensus",
                Config {
                    token: DURATION_MAX_MS,
                    ..Config::default()
                },
            ),
            (
                "merge",
                Config {
                    merge: u64::MAX,
                    ..Config::default()
                },
            ),
        ] {
            let e = c.validate().unwrap_err();
            assert_eq!(e.knob, knob);
            assert!(e.reason.contains("above one day"), "{e}");
        }
        let longest = Config {
            token: DURATION_MAX_MS,
            consensus: Some(DURATION_MAX_MS),
            merge: DURATION_MAX_MS,
            join: DURATION_MAX_MS - 1,
            ..Config::default()
        };
        assert_eq!(longest.validate().unwrap().token, DURATION_MAX_MS * MS);
    }
}
