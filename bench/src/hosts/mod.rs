//! Where an experiment's nodes run: the `local` backend (network namespaces on this
//! machine, [`crate::runner`]'s default) or the `ssh` backend (the hosts of an
//! [`inventory::Inventory`], reached with the system's OpenSSH: one multiplexed connection
//! per host, [`ssh::Ssh`]). The ssh backend does on each host what the local one does in
//! namespaces: uploads the binary and configs, starts and signals nodes by PID
//! ([`remote::RemoteCluster`]), applies network faults with nftables ([`nft::NetState`]),
//! gathers records, and maps them onto the controller's clock with a measured offset and
//! its uncertainty ([`clock`]).

pub mod clock;
pub mod inventory;
pub mod nft;
pub mod remote;
pub mod ssh;

use crate::summary::Summary;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The clock-domain table of runs on the ssh backend (empty when none ran there): per
/// configuration, its hosts, the largest offset uncertainty over its repetitions, and the
/// delivery latency with it, or a statement that the latency is within the uncertainty
/// where it is (a figure smaller than what the clocks allow to tell is not printed as one).
pub fn clock_table(runs: &[(PathBuf, Summary)]) -> String {
    let mut t = String::new();
    for (_, s) in runs {
        let Some(b) = &s.backend else { continue };
        if t.is_empty() {
            t.push_str(
                "\nClock domains (ssh backend): every host's records mapped onto the controller's clock with the \
                 offset measured before and after each repetition (minimum round trip of 32 exchanges); a span \
                 between two hosts' records (a recovery, a latency across hosts) is known within ± 2 × the \
                 uncertainty\n\n| configuration | backend | hosts (nodes) | offset uncertainty ms (max over reps and hosts) | span uncertainty ms | latency p50 / p99 ms |\n|---|---|---|---|---|---|\n",
            );
        }
        let u = s
            .reps
            .iter()
            .filter_map(|r| r.clock_uncertainty_ms)
            .fold(0.0f64, f64::max);
        let span = 2.0 * u;
        let lat = |v: f64| {
            if v < span {
                format!("< {span:.3} (within the clocks' uncertainty: not stated)")
            } else {
                format!("{v:.3} ± {span:.3}")
            }
        };
        let hosts = b
            .hosts
            .iter()
            .map(|(h, n)| {
                format!(
                    "{h} ({})",
                    n.iter()
                        .map(|x| x.to_string())
                        .collect::<Vec<_>>()
                        .join(",")
                )
            })
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            t,
            "| {} | {} ({}) | {hosts} | {u:.3} | {span:.3} | {} / {} |",
            crate::compare::label(s),
            b.kind,
            b.inventory,
            lat(s.latency_ms.p50),
            lat(s.latency_ms.p99),
        );
    }
    t
}
