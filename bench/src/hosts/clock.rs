//! Clock domains: every host's records are on its own monotonic clock. The controller
//! estimates each host's offset to its own clock as NTP does: timestamped exchanges over
//! one ssh channel to `ringlab clock --serve` on the host (it answers each line with its
//! CLOCK_MONOTONIC), keeping the exchange with the smallest round trip. For that
//! exchange, sent at `t1` and answered at `t4` (controller) with the host's reading `t`,
//! the offset is `t - (t1 + t4) / 2`, and the true offset lies within half the round trip
//! of it: the uncertainty. Offsets are measured before and after each repetition; the
//! repetition's records are mapped with their mean, and the uncertainty grows by half
//! their difference (the drift between the two).

use anyhow::{bail, Context, Result};
use ringlab_net::monotonic_ns;
use serde::{Deserialize, Serialize};
use std::io::{BufRead as _, BufReader, Write as _};
use std::process::Child;

/// Exchanges per estimate.
pub const EXCHANGES: usize = 32;

/// One estimate of a host's clock offset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offset {
    /// Host clock minus controller clock, ns.
    pub offset_ns: i64,
    /// The true offset is within this of `offset_ns`, ns.
    pub uncertainty_ns: u64,
    /// The smallest round trip, ns.
    pub rtt_ns: u64,
}

impl Offset {
    /// Maps a time on the host's clock onto the controller's.
    pub fn to_controller(&self, host_t_ns: u64) -> u64 {
        (host_t_ns as i64).saturating_sub(self.offset_ns).max(0) as u64
    }

    /// Maps a time on the controller's clock onto the host's.
    pub fn to_host(&self, t_ns: u64) -> u64 {
        (t_ns as i64).saturating_add(self.offset_ns).max(0) as u64
    }

    /// One offset for a span measured at both ends: their mean, its uncertainty the larger
    /// of theirs plus half their difference.
    pub fn across(before: &Self, after: &Self) -> Self {
        let diff = before.offset_ns.abs_diff(after.offset_ns);
        Self {
            offset_ns: ((before.offset_ns as i128 + after.offset_ns as i128) / 2) as i64,
            uncertainty_ns: before.uncertainty_ns.max(after.uncertainty_ns) + diff / 2,
            rtt_ns: before.rtt_ns.min(after.rtt_ns),
        }
    }
}

/// The minimum-round-trip filter over `(t1, host_t, t4)` exchanges.
pub fn best(samples: &[(u64, u64, u64)]) -> Option<Offset> {
    samples
        .iter()
        .filter(|(t1, _, t4)| t4 >= t1)
        .min_by_key(|(t1, _, t4)| t4 - t1)
        .map(|&(t1, t, t4)| {
            let rtt = t4 - t1;
            let mid = t1 as i128 + rtt as i128 / 2;
            Offset {
                offset_ns: (t as i128 - mid) as i64,
                uncertainty_ns: rtt.div_ceil(2),
                rtt_ns: rtt,
            }
        })
}

/// Measures one host's offset over `channel`, a running `ringlab clock --serve`.
pub fn measure(channel: &mut Child, host: &str) -> Result<Offset> {
    let mut stdin = channel.stdin.take().context("the clock channel's stdin")?;
    let stdout = channel
        .stdout
        .take()
        .context("the clock channel's stdout")?;
    let mut lines = BufReader::new(stdout);
    let mut samples = Vec::with_capacity(EXCHANGES);
    let mut line = String::new();
    let result = (|| {
        for _ in 0..EXCHANGES {
            let t1 = monotonic_ns();
            stdin.write_all(b"t\n")?;
            stdin.flush()?;
            line.clear();
            if lines.read_line(&mut line)? == 0 {
                bail!("host {host}: the clock channel closed (is ringlab clock there?)");
            }
            let t4 = monotonic_ns();
            let t: u64 = line
                .trim()
                .parse()
                .with_context(|| format!("host {host}: the clock answered {line:?}"))?;
            samples.push((t1, t, t4));
        }
        Ok(())
    })();
    drop(stdin);
    let _ = channel.wait();
    result?;
    best(&samples).with_context(|| format!("host {host}: no clock exchange"))
}

/// Waits until the monotonic clock reads `t_ns` or later (at most 10 s: a reading further
/// ahead is a mistake, not a plan); returns the reading then.
pub fn sleep_until(t_ns: u64) -> u64 {
    let limit = monotonic_ns().saturating_add(10_000_000_000);
    let t_ns = t_ns.min(limit);
    loop {
        let now = monotonic_ns();
        if now >= t_ns {
            return now;
        }
        // Sleep most of the way, then spin the last 200 µs (a sleep overshoots).
        let left = t_ns - now;
        if left > 200_000 {
            std::thread::sleep(std::time::Duration::from_nanos(left - 200_000));
        } else {
            std::hint::spin_loop();
        }
    }
}

/// What `ringlab clock --serve` does: answers every line of `input` with the clock.
pub fn serve(input: impl std::io::BufRead, mut out: impl std::io::Write) -> std::io::Result<()> {
    for line in input.lines() {
        line?;
        writeln!(out, "{}", monotonic_ns())?;
        out.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_smallest_round_trip_wins() {
        // Host clock 1000 ahead. Exchange 1: rtt 100, symmetric. Exchange 2: rtt 400,
        // delayed on the way back (its midpoint estimate is off by 150).
        let s = [(0, 1050, 100), (1000, 2100, 1400)];
        let o = best(&s).unwrap();
        assert_eq!(o.offset_ns, 1000);
        assert_eq!(o.uncertainty_ns, 50);
        assert_eq!(o.rtt_ns, 100);
        assert_eq!(o.to_controller(5000), 4000);
        assert_eq!(o.to_host(4000), 5000);
        assert!(best(&[]).is_none());
    }

    #[test]
    fn drift_across_a_repetition_widens_the_uncertainty() {
        let a = Offset {
            offset_ns: -100,
            uncertainty_ns: 20,
            rtt_ns: 40,
        };
        let b = Offset {
            offset_ns: 100,
            uncertainty_ns: 30,
            rtt_ns: 60,
        };
        let m = Offset::across(&a, &b);
        assert_eq!(m.offset_ns, 0);
        assert_eq!(m.uncertainty_ns, 30 + 100);
        assert_eq!(m.rtt_ns, 40);
    }

    #[test]
    fn sleep_until_returns_at_or_after_the_instant() {
        let t = monotonic_ns() + 2_000_000;
        assert!(sleep_until(t) >= t);
        // A past instant returns at once with the present.
        let now = monotonic_ns();
        assert!(sleep_until(now - 1) >= now);
    }

    #[test]
    fn serve_answers_each_line_with_a_rising_clock() {
        let mut out = Vec::new();
        serve(&b"t\nt\nt\n"[..], &mut out).unwrap();
        let v: Vec<u64> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| l.parse().unwrap())
            .collect();
        assert_eq!(v.len(), 3);
        assert!(v[0] <= v[1] && v[1] <= v[2]);
    }
}
