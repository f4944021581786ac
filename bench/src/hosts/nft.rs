//! Network faults on real hosts, with nftables: the ssh backend's counterpart of fault.sh.
//!
//! The controller keeps the network's state (which node does not hear which, and the loss
//! on each directed pair) and, after each fault, writes every host's whole table afresh in
//! one atomic `nft -f` transaction: table `inet <prefix>`, one input chain, a rule per
//! directed pair of nodes that is cut or lossy, matched by the sender's ring address and
//! port and the receiver's port (a node sends everything from its bound `addr:port`, see
//! net/src/sockets.rs). Only ring traffic between the run's own nodes is ever matched, so
//! ssh and everything else on the host is untouched; the table is the run's own (its
//! prefix), and a heal with nothing left to drop deletes it.

use crate::fault::NetworkFault;
use anyhow::{bail, Result};
use ringlab_ring::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::IpAddr;

/// The network as the faults so far left it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetState {
    /// (from, to): `to` does not hear `from`.
    pub blocked: BTreeSet<(NodeId, NodeId)>,
    /// Loss on every frame between two nodes, percent.
    pub loss_all: u32,
    /// Loss on a node's frames, in and out, percent.
    pub loss_node: BTreeMap<NodeId, u32>,
}

/// Says why a fault cannot be carried out with nftables on the hosts, or `None`.
pub fn unsupported(f: &NetworkFault) -> Option<&'static str> {
    match f {
        NetworkFault::TrunkDown | NetworkFault::TrunkUp => {
            Some("the trunk belongs to the two-sites namespace shape; split the hosts instead")
        }
        NetworkFault::Loss { burst, .. } if *burst > 1 => Some(
            "bursty loss runs in relays on the namespace bridge; on hosts only uniform loss (burst 0 or 1)",
        ),
        NetworkFault::Delay { .. } | NetworkFault::Reorder { .. } | NetworkFault::Duplicate { .. } => {
            Some("delay, reordering and duplication run in relays on the namespace bridge")
        }
        _ => None,
    }
}

impl NetState {
    /// Applies `f` to the state (as fault.sh does: cuts add up until a heal).
    pub fn apply(&mut self, f: &NetworkFault, nodes: usize) -> Result<()> {
        if let Some(why) = unsupported(f) {
            bail!("not on the ssh backend: {why}");
        }
        let all = 1..=nodes as NodeId;
        let mut block = |a: NodeId, b: NodeId| {
            if a != b {
                self.blocked.insert((a, b));
            }
        };
        match f {
            NetworkFault::Isolate(iso) => {
                for &n in iso {
                    for o in all.clone() {
                        block(n, o);
                        block(o, n);
                    }
                }
            }
            NetworkFault::Split(groups) => {
                for (i, g) in groups.iter().enumerate() {
                    for (j, h) in groups.iter().enumerate() {
                        if i != j {
                            for &a in g {
                                for &b in h {
                                    block(a, b);
                                }
                            }
                        }
                    }
                }
            }
            NetworkFault::Cut { nodes, oneway } => {
                block(nodes[0], nodes[1]);
                if !oneway {
                    block(nodes[1], nodes[0]);
                }
            }
            NetworkFault::Heal => self.blocked.clear(),
            NetworkFault::Clear => *self = Self::default(),
            NetworkFault::Loss { nodes, pct, .. } => {
                if nodes.is_empty() {
                    self.loss_all = *pct;
                } else {
                    for &n in nodes {
                        self.loss_node.insert(n, *pct);
                    }
                }
            }
            _ => unreachable!("refused above"),
        }
        Ok(())
    }

    /// The loss from `a` to `b`, percent: the largest that applies.
    fn loss(&self, a: NodeId, b: NodeId) -> u32 {
        let n = |x| self.loss_node.get(&x).copied().unwrap_or(0);
        self.loss_all.max(n(a)).max(n(b)).min(100)
    }

    /// The nft script for a host whose nodes are `local`, given every node's endpoint:
    /// deletes the run's table and, when anything is cut or lossy towards `local`, makes it
    /// again with those rules.
    pub fn script(
        &self,
        table: &str,
        local: &[NodeId],
        endpoint: &dyn Fn(NodeId) -> (IpAddr, u16),
        nodes: usize,
    ) -> String {
        let mut rules = String::new();
        for &to in local {
            let (_, dport) = endpoint(to);
            for from in 1..=nodes as NodeId {
                if from == to {
                    continue;
                }
                let (addr, sport) = endpoint(from);
                let fam = if addr.is_ipv4() { "ip" } else { "ip6" };
                let m = format!("{fam} saddr {addr} udp sport {sport} udp dport {dport}");
                if self.blocked.contains(&(from, to)) {
                    let _ = writeln!(rules, "    {m} drop comment \"{from} -> {to} cut\"");
                } else {
                    let pct = self.loss(from, to);
                    if pct > 0 {
                        let _ = writeln!(
                            rules,
                            "    {m} numgen random mod 100 < {pct} drop comment \"{from} -> {to} loss\""
                        );
                    }
                }
            }
        }
        let mut s = format!("table inet {table} {{}}\ndelete table inet {table}\n");
        if !rules.is_empty() {
            let _ = write!(
                s,
                "table inet {table} {{\n  chain input {{\n    type filter hook input priority -10; policy accept;\n{rules}  }}\n}}\n"
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(n: NodeId) -> (IpAddr, u16) {
        (format!("10.9.0.{n}").parse().unwrap(), 5405)
    }

    #[test]
    fn cuts_add_up_and_heal_removes_them_but_not_the_loss() {
        let mut s = NetState::default();
        s.apply(&NetworkFault::Isolate(vec![3]), 3).unwrap();
        assert_eq!(s.blocked.len(), 4);
        s.apply(
            &NetworkFault::Cut {
                nodes: [1, 2],
                oneway: true,
            },
            3,
        )
        .unwrap();
        assert!(s.blocked.contains(&(1, 2)) && !s.blocked.contains(&(2, 1)));
        s.apply(
            &NetworkFault::Loss {
                nodes: vec![],
                pct: 10,
                burst: 0,
            },
            3,
        )
        .unwrap();
        s.apply(&NetworkFault::Heal, 3).unwrap();
        assert!(s.blocked.is_empty());
        assert_eq!(s.loss_all, 10);
        s.apply(&NetworkFault::Clear, 3).unwrap();
        assert_eq!(s, NetState::default());
    }

    #[test]
    fn a_split_blocks_across_groups_only() {
        let mut s = NetState::default();
        s.apply(&NetworkFault::Split(vec![vec![1, 2], vec![3]]), 3)
            .unwrap();
        let want: BTreeSet<_> = [(1, 3), (2, 3), (3, 1), (3, 2)].into();
        assert_eq!(s.blocked, want);
    }

    #[test]
    fn the_script_drops_only_the_run_s_pairs_on_the_receiver() {
        let mut s = NetState::default();
        s.apply(
            &NetworkFault::Cut {
                nodes: [1, 2],
                oneway: true,
            },
            3,
        )
        .unwrap();
        s.apply(
            &NetworkFault::Loss {
                nodes: vec![3],
                pct: 20,
                burst: 0,
            },
            3,
        )
        .unwrap();
        let on2 = s.script("rl9", &[2], &ep, 3);
        assert!(on2.contains("ip saddr 10.9.0.1 udp sport 5405 udp dport 5405 drop"));
        assert!(on2.contains(
            "ip saddr 10.9.0.3 udp sport 5405 udp dport 5405 numgen random mod 100 < 20 drop"
        ));
        assert!(on2.starts_with("table inet rl9 {}\ndelete table inet rl9\n"));
        // Node 1 hears node 2: only node 3's loss towards it.
        let on1 = s.script("rl9", &[1], &ep, 3);
        assert!(!on1.contains("10.9.0.2"), "{on1}");
        // Nothing to drop: the table is only deleted.
        let clear = NetState::default().script("rl9", &[1], &ep, 3);
        assert_eq!(clear, "table inet rl9 {}\ndelete table inet rl9\n");
    }

    #[test]
    fn relay_faults_are_refused_with_the_reason() {
        let mut s = NetState::default();
        let e = s
            .apply(
                &NetworkFault::Delay {
                    nodes: vec![1],
                    ms: 5,
                    jitter_ms: 0,
                },
                3,
            )
            .unwrap_err();
        assert!(e.to_string().contains("relays"), "{e}");
        assert!(s
            .apply(
                &NetworkFault::Loss {
                    nodes: vec![],
                    pct: 5,
                    burst: 4
                },
                3
            )
            .is_err());
    }
}
