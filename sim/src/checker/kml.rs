//! The modification-log properties (16 and 17 of the [checker](super)), judged on the
//! `fileset` records the `kml` service writes on every member after each completed sync.
//!
//! - 16, **fileset divergence**: every member that completes the sync of one ring has
//!   applied the same records in the same order (reintegration decides only from the
//!   replica and the agreed records), so all `fileset` records that name one ring report the
//!   same digest, history length, conflict-list digest and tree digest. A record without a
//!   ring is not compared.
//! - 17, **record gap**: in every `fileset` record, each origin's `[last, count]` are equal:
//!   the history holds every record number of the origin from 1 to its last (a record that
//!   is not the next of its origin is refused, never applied).
//!
//! Each divergence is reported once per ring and node, naming the first node seen with the
//! ring's figures; each gap once per record and origin.

use super::{Property, Violations};
use ringlab_records::{Body, Record};
use ringlab_ring::{NodeId, RingId};
use std::collections::HashMap;

/// What one `fileset` record says must agree across a ring's members.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Figures<'a> {
    digest: &'a str,
    records: u64,
    conflicts: Option<&'a str>,
    tree: Option<&'a str>,
}

impl Figures<'_> {
    /// Returns the fields that differ from `o`, in words.
    fn differences(&self, o: &Self) -> Vec<String> {
        let mut d = vec![];
        if self.digest != o.digest {
            d.push(format!("digest {} vs {}", o.digest, self.digest));
        }
        if self.records != o.records {
            d.push(format!("records {} vs {}", o.records, self.records));
        }
        if self.conflicts != o.conflicts {
            d.push(format!(
                "conflicts {} vs {}",
                o.conflicts.unwrap_or("-"),
                self.conflicts.unwrap_or("-")
            ));
        }
        if self.tree != o.tree {
            d.push(format!(
                "tree {} vs {}",
                o.tree.unwrap_or("-"),
                self.tree.unwrap_or("-")
            ));
        }
        d
    }
}

/// Checks properties 16 and 17 over the records in time order.
pub(super) fn check(order: &[&Record], v: &mut Violations) {
    let mut first: HashMap<RingId, (NodeId, Figures<'_>)> = HashMap::new();
    for r in order {
        let Body::Fileset {
            ring,
            digest,
            records,
            tree,
            conflicts,
            origins,
            ..
        } = &r.body
        else {
            continue;
        };
        for (origin, [last, count]) in origins {
            if last != count {
                v.add(
                    Property::RecordGap,
                    format!(
                        "node {} inc {} at {} ns{}: origin {origin} last record {last}, \
                         {count} held",
                        r.node,
                        r.inc,
                        r.t_ns,
                        ring.map_or_else(String::new, |g| format!(" (ring {g})"))
                    ),
                );
            }
        }
        let Some(ring) = ring else {
            continue;
        };
        let fig = Figures {
            digest,
            records: *records,
            conflicts: conflicts.as_deref(),
            tree: tree.as_deref(),
        };
        match first.get(ring) {
            Some((n, f)) => {
                let d = fig.differences(f);
                if !d.is_empty() {
                    v.add(
                        Property::FilesetDivergence,
                        format!(
                            "ring {ring}: node {n} and node {} differ: {}",
                            r.node,
                            d.join(", ")
                        ),
                    );
                }
            }
            None => {
                first.insert(*ring, (r.node, fig));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::checker::{check, Property, Report};
    use ringlab_records::{Body, Record};
    use ringlab_ring::{NodeId, RingId};
    use std::collections::BTreeMap;

    fn rec(t: u64, node: NodeId, body: Body) -> Record {
        Record {
            t_ns: t,
            node,
            inc: 1,
            body,
        }
    }

    fn props(r: &Report) -> Vec<Property> {
        let mut p: Vec<Property> = r.violations.iter().map(|v| v.property).collect();
        p.dedup();
        p
    }

    /// A `fileset` record of ring `1.<seq>`: digest `d`, `records` records, conflict digest
    /// `c`, tree `t`, and origins `(origin, last, count)`.
    fn fs(seq: u64, d: &str, records: u64, c: &str, t: &str, origins: &[(u32, u64, u64)]) -> Body {
        Body::Fileset {
            ring: Some(RingId { rep: 1, seq }),
            digest: d.into(),
            records,
            tree: Some(t.into()),
            conflicts: Some(c.into()),
            conflict_count: Some(0),
            origins: origins
                .iter()
                .map(|(o, l, n)| (o.to_string(), [*l, *n]))
                .collect::<BTreeMap<_, _>>(),
            mirror: None,
        }
    }

    #[test]
    fn a_diverged_fileset_at_one_ring_is_found() {
        let o = [(1, 3, 3), (2, 2, 2)];
        // Three members agree at ring 1.4; a later ring may differ from an earlier one.
        let ok = vec![
            rec(1, 1, fs(4, "aa", 5, "c0", "t0", &o)),
            rec(2, 2, fs(4, "aa", 5, "c0", "t0", &o)),
            rec(3, 3, fs(4, "aa", 5, "c0", "t0", &o)),
            rec(4, 1, fs(8, "bb", 6, "c1", "t1", &[(1, 4, 4), (2, 2, 2)])),
        ];
        let r = check(&ok, None);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        // Each figure alone diverges.
        for (i, body) in [
            fs(4, "ab", 5, "c0", "t0", &o),
            fs(4, "aa", 6, "c0", "t0", &o),
            fs(4, "aa", 5, "c9", "t0", &o),
            fs(4, "aa", 5, "c0", "t9", &o),
        ]
        .into_iter()
        .enumerate()
        {
            let mut bad = ok.clone();
            bad[2] = rec(3, 3, body);
            let r = check(&bad, None);
            assert_eq!(props(&r), vec![Property::FilesetDivergence], "figure {i}");
            assert_eq!(r.violations.len(), 1);
            let d = &r.violations[0].detail;
            assert!(d.contains("ring 1.4"), "{d}");
            assert!(d.contains("node 1") && d.contains("node 3"), "{d}");
        }
        // Records without a ring are not compared.
        let mut ringless = ok.clone();
        for r in &mut ringless[..2] {
            if let Body::Fileset { ring, digest, .. } = &mut r.body {
                *ring = None;
                *digest = format!("{}{}", digest, r.node);
            }
        }
        assert!(check(&ringless, None).violations.is_empty());
    }

    #[test]
    fn a_gap_in_an_origins_record_numbers_is_found() {
        let ok = vec![rec(
            1,
            1,
            fs(4, "aa", 5, "c0", "t0", &[(0, 2, 2), (3, 3, 3)]),
        )];
        assert!(check(&ok, None).violations.is_empty());
        // Origin 3's last record is 4, but only 3 of its records are held.
        let gap = vec![rec(
            1,
            1,
            fs(4, "aa", 5, "c0", "t0", &[(0, 2, 2), (3, 4, 3)]),
        )];
        let r = check(&gap, None);
        assert_eq!(props(&r), vec![Property::RecordGap]);
        assert!(
            r.violations[0].detail.contains("origin 3"),
            "{:?}",
            r.violations
        );
        // More held than numbered (a duplicate applied) is a gap of the other kind.
        let dup = vec![rec(1, 2, fs(4, "aa", 5, "c0", "t0", &[(2, 2, 3)]))];
        assert_eq!(props(&check(&dup, None)), vec![Property::RecordGap]);
    }
}
