//! corosync's log, read as it grows: its TOTEM membership state changes as ringlab's
//! [`MembState`] transitions.
//!
//! The lines parsed (corosync 3.1.7 with `logger_subsys { subsys: TOTEM; debug: on }` and
//! `timestamp: hires`; examples from a real run are in `tests/data/`):
//!
//! | line (after `[TOTEM ] `) | transition |
//! |---|---|
//! | `entering GATHER state from N(text).` | to `gather`, the reason from `N`/`text` (below) |
//! | `Creating commit token because I am the rep.` | (remembered: the next COMMIT is by `consensus`) |
//! | `entering COMMIT state.` | to `commit`, reason `consensus` (as representative) or `commit_token` |
//! | `entering RECOVERY state.` | to `recovery`, reason `commit_complete` |
//! | `entering OPERATIONAL state.` | to `operational`, reason `installed` |
//!
//! `N` is corosync's `gather_state_from`: 0 and 3 consensus timeout, 1 and 12–14 a join,
//! 2/4/5 the token lost in OPERATIONAL/COMMIT/RECOVERY, 6 failed to receive, 7–8 a foreign
//! message, 9–11 a merge, 15 an interface change (start-up). Lines such as `A processor
//! failed, forming new configuration` and `The token was lost in the OPERATIONAL state.`
//! need no transition of their own: the GATHER line that follows names the cause.
//!
//! Guarantees: the parser is pure (the caller hands it bytes and the current year); a line
//! split across two reads is parsed once, whole; a line it does not know is skipped; the
//! log's own timestamp is kept as written and, where it parses, as Unix ns (corosync is
//! started with `TZ=UTC`, so the wall clock it writes is UTC; its resolution is the
//! millisecond it prints, from a coarse real-time clock).

use ringlab_ring::{MembState, Reason};

/// One membership state change read from corosync's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogState {
    /// The state before (the last one read; `start` before the first).
    pub from: MembState,
    /// The state entered.
    pub to: MembState,
    /// Why, as ringlab names it.
    pub reason: Reason,
    /// The line's own timestamp, as written (`Dec 02 00:52:10.655`).
    pub log_time: String,
    /// The same in Unix ns (UTC), when it parses.
    pub log_unix_ns: Option<u64>,
    /// corosync's `gather_state_from` code, on a GATHER line.
    pub gather_from: Option<u32>,
}

/// Reads corosync's log lines, keeping the state they last entered.
#[derive(Clone, Debug)]
pub struct LogParser {
    state: MembState,
    rep_commit: bool,
    partial: Vec<u8>,
    year: i32,
}

impl LogParser {
    /// Returns a parser that dates lines in `year` (corosync writes no year: the node hands
    /// it the year it started in).
    pub fn new(year: i32) -> Self {
        Self {
            state: MembState::Start,
            rep_commit: false,
            partial: Vec::new(),
            year,
        }
    }

    /// Returns the state the log last entered.
    pub fn state(&self) -> MembState {
        self.state
    }

    /// Takes the next bytes of the log; returns the transitions of its complete lines.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<LogState> {
        self.partial.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(i) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=i).collect();
            let line = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
            out.extend(self.line(&line));
        }
        out
    }

    /// Parses one line; returns its transition, if it is one.
    pub fn line(&mut self, line: &str) -> Option<LogState> {
        let msg = line.split_once("[TOTEM ] ")?.1.trim_end();
        let (to, reason, gather_from) =
            if let Some(rest) = msg.strip_prefix("entering GATHER state from ") {
                let (code, text) = match rest.split_once('(') {
                    Some((n, t)) => (n.trim().parse::<u32>().ok(), t),
                    None => (None, rest),
                };
                self.rep_commit = false;
                (MembState::Gather, gather_reason(code, text), code)
            } else if msg.starts_with("Creating commit token because I am the rep") {
                self.rep_commit = true;
                return None;
            } else if msg.starts_with("entering COMMIT state") {
                let r = if std::mem::take(&mut self.rep_commit) {
                    Reason::Consensus
                } else {
                    Reason::CommitToken
                };
                (MembState::Commit, r, None)
            } else if msg.starts_with("entering RECOVERY state") {
                (MembState::Recovery, Reason::CommitComplete, None)
            } else if msg.starts_with("entering OPERATIONAL state") {
                (MembState::Operational, Reason::Installed, None)
            } else {
                return None;
            };
        let log_time = timestamp_of(line);
        let log_unix_ns = log_time.as_deref().and_then(|t| unix_ns(t, self.year));
        let from = std::mem::replace(&mut self.state, to);
        Some(LogState {
            from,
            to,
            reason,
            log_time: log_time.unwrap_or_default(),
            log_unix_ns,
            gather_from,
        })
    }
}

/// Returns the reason of a GATHER line from its code, or failing that its text.
fn gather_reason(code: Option<u32>, text: &str) -> Reason {
    match code {
        Some(0 | 3) => return Reason::ConsensusTimeout,
        Some(1 | 12..=14) => return Reason::Join,
        Some(2) => return Reason::TokenLoss,
        Some(4) => return Reason::CommitTokenLoss,
        Some(5) => return Reason::RecoveryTokenLoss,
        Some(6) => return Reason::FailToRecv,
        Some(7 | 8) => return Reason::ForeignMessage,
        Some(9..=11) => return Reason::MergeDetect,
        Some(15) => return Reason::Startup,
        _ => {}
    }
    let t = text.to_ascii_lowercase();
    if t.contains("token was lost in the commit") {
        Reason::CommitTokenLoss
    } else if t.contains("token was lost in the recovery") {
        Reason::RecoveryTokenLoss
    } else if t.contains("token was lost") {
        Reason::TokenLoss
    } else if t.contains("consensus") {
        Reason::ConsensusTimeout
    } else if t.contains("failed to receive") {
        Reason::FailToRecv
    } else if t.contains("foreign") {
        Reason::ForeignMessage
    } else if t.contains("merge") {
        Reason::MergeDetect
    } else if t.contains("interface") {
        Reason::Startup
    } else {
        Reason::Join
    }
}

/// Returns the timestamp a line starts with: `Mon DD HH:MM:SS.mmm` (hires) or
/// `Mon DD HH:MM:SS`.
fn timestamp_of(line: &str) -> Option<String> {
    let head = line.get(..15)?;
    let b = head.as_bytes();
    if b[3] != b' ' || b[6] != b' ' || b[9] != b':' || b[12] != b':' {
        return None;
    }
    let ms = line
        .get(15..19)
        .filter(|s| s.starts_with('.') && s[1..].bytes().all(|c| c.is_ascii_digit()));
    Some(match ms {
        Some(ms) => format!("{head}{ms}"),
        None => head.to_string(),
    })
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Returns a timestamp of [`timestamp_of`] in `year` as Unix ns (UTC).
fn unix_ns(t: &str, year: i32) -> Option<u64> {
    let name = t.get(..3)?;
    let month = MONTHS.iter().position(|m| *m == name)? as u32 + 1;
    let day: u32 = t.get(4..6)?.trim().parse().ok()?;
    let h: u64 = t.get(7..9)?.parse().ok()?;
    let m: u64 = t.get(10..12)?.parse().ok()?;
    let s: u64 = t.get(13..15)?.parse().ok()?;
    let ms: u64 = t.get(16..19).and_then(|x| x.parse().ok()).unwrap_or(0);
    let days = days_from_civil(year, month, day);
    if days < 0 {
        return None;
    }
    let secs = days as u64 * 86_400 + h * 3600 + m * 60 + s;
    Some(secs * 1_000_000_000 + ms * 1_000_000)
}

/// Returns the days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// algorithm).
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Returns the current UTC year from the real-time clock.
pub fn current_year() -> i32 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut days = (secs / 86_400) as i64;
    let mut year = 1970;
    loop {
        let len = if days_from_civil(year + 1, 1, 1) - days_from_civil(year, 1, 1) == 366 {
            366
        } else {
            365
        };
        if days < len {
            return year;
        }
        days -= len;
        year += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MembState::*;

    const RUN: &str = include_str!("../tests/data/corosync-3.1.7-one-node.log");

    #[test]
    fn a_real_start_and_token_loss_give_ringlabs_transitions() {
        let mut p = LogParser::new(2026);
        let got: Vec<(MembState, MembState, Reason)> = p
            .feed(RUN.as_bytes())
            .into_iter()
            .map(|s| (s.from, s.to, s.reason))
            .collect();
        assert_eq!(
            got,
            [
                (Start, Gather, Reason::Startup),
                (Gather, Commit, Reason::Consensus),
                (Commit, Recovery, Reason::CommitComplete),
                (Recovery, Operational, Reason::Installed),
                (Operational, Gather, Reason::TokenLoss),
                (Gather, Commit, Reason::Consensus),
                (Commit, Recovery, Reason::CommitComplete),
                (Recovery, Operational, Reason::Installed),
            ]
        );
        assert_eq!(p.state(), Operational);
    }

    #[test]
    fn a_real_isolation_and_heal_give_ringlabs_reasons() {
        // Node 3 of 3: start and merge, isolated (token loss, consensus timeout, a ring of
        // its own), healed (a foreign message, a merge, the ring of three).
        let log = include_str!("../tests/data/corosync-3.1.7-node-3-of-3-isolated-and-healed.log");
        let mut p = LogParser::new(2026);
        let got: Vec<(MembState, Reason, Option<u32>)> = p
            .feed(log.as_bytes())
            .into_iter()
            .map(|s| (s.to, s.reason, s.gather_from))
            .collect();
        let g = |r, c| (Gather, r, Some(c));
        let rest = |first| {
            [
                (Commit, first, None),
                (Recovery, Reason::CommitComplete, None),
                (Operational, Reason::Installed, None),
            ]
        };
        let mut want = vec![
            g(Reason::Startup, 15),
            g(Reason::MergeDetect, 11),
            g(Reason::MergeDetect, 11),
        ];
        want.extend(rest(Reason::CommitToken));
        want.extend([g(Reason::TokenLoss, 2), g(Reason::ConsensusTimeout, 0)]);
        want.extend(rest(Reason::Consensus));
        want.extend([g(Reason::ForeignMessage, 7), g(Reason::MergeDetect, 11)]);
        want.extend(rest(Reason::CommitToken));
        assert_eq!(got, want);
    }

    #[test]
    fn the_lines_own_timestamp_is_kept() {
        let mut p = LogParser::new(2026);
        let s = p
            .line(
                "Dec 02 00:52:10.655 [5971] vm corosync debug   [TOTEM ] entering GATHER state \
                 from 2(The token was lost in the OPERATIONAL state.).",
            )
            .unwrap();
        assert_eq!(s.log_time, "Dec 02 00:52:10.655");
        assert_eq!(s.gather_from, Some(2));
        // 2026-12-02T00:52:10.655Z
        assert_eq!(s.log_unix_ns, Some(1_796_172_730_655_000_000));
        let s = p
            .line("Jan 01 00:00:00 [1] h corosync debug   [TOTEM ] entering COMMIT state.")
            .unwrap();
        assert_eq!(s.log_time, "Jan 01 00:00:00");
        assert_eq!(s.log_unix_ns, Some(1_767_225_600_000_000_000));
        assert_eq!(
            (s.from, s.to, s.reason),
            (Gather, Commit, Reason::CommitToken)
        );
    }

    #[test]
    fn split_lines_and_unknown_lines() {
        let mut p = LogParser::new(2026);
        let line =
            "Dec 02 00:51:59.423 [5971] vm corosync debug   [TOTEM ] entering OPERATIONAL state.\n";
        let (a, b) = line.split_at(40);
        assert!(p.feed(a.as_bytes()).is_empty());
        let got = p.feed(b.as_bytes());
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].to, Operational);
        assert!(p
            .feed(b"Dec 02 00:51:59.423 [5971] vm corosync notice  [TOTEM ] A new membership (1.5) was formed.\n")
            .is_empty());
        assert!(p.feed(b"garbage\n\n").is_empty());
    }

    #[test]
    fn gather_reasons_by_code_and_text() {
        for (code, text, want) in [
            (0, "consensus timeout", Reason::ConsensusTimeout),
            (
                4,
                "The token was lost in the COMMIT state.",
                Reason::CommitTokenLoss,
            ),
            (
                5,
                "The token was lost in the RECOVERY state.",
                Reason::RecoveryTokenLoss,
            ),
            (6, "failed to receive", Reason::FailToRecv),
            (9, "merge during operational state", Reason::MergeDetect),
            (12, "join during operational state", Reason::Join),
        ] {
            assert_eq!(gather_reason(Some(code), text), want, "{code}");
        }
        assert_eq!(
            gather_reason(None, "The token was lost in the OPERATIONAL state."),
            Reason::TokenLoss
        );
    }

    #[test]
    fn the_year_is_read() {
        assert!(current_year() >= 2024);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }
}
