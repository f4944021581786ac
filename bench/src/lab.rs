//! `ringlab lab EXP.toml`: an experiment's cluster, up and left running for a person to
//! work with, as Mininet's CLI leaves its network: the topology, the key and the nodes of
//! the experiment made as `ringlab run` makes them for a repetition (its `[[faults]]` and
//! `[load]` are not applied), then the commands that act on it printed (faults with
//! fault.sh, status, load and records with `ringlab ctl`), until the person presses Enter,
//! a signal arrives, or `max_minutes` have passed (a lab goes away by itself). Then the
//! nodes are stopped and everything the lab made is torn down, as after a repetition, on
//! every exit path; the records stay in the lab's directory.

use crate::experiment::Experiment;
use crate::prefix::PrefixLock;
use crate::runner::{local_spec, random_key, require_root, Scripts, Topology};
use anyhow::{Context, Result};
use ringlab_net::harness::{Cluster, Key};
use ringlab_ring::NodeId;
use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How a lab runs.
#[derive(Clone, Debug)]
pub struct LabOpts {
    /// The `ringlab` binary the nodes run.
    pub binary: PathBuf,
    /// Where the nodes' configs, sockets and records go.
    pub dir: PathBuf,
    /// The lab goes away by itself after this long.
    pub max_minutes: u64,
}

/// The commands a person types to work with the lab.
pub fn commands(
    exp: &Experiment,
    binary: &Path,
    prefix: &str,
    scripts: &Path,
    dir: &Path,
) -> Vec<(String, String)> {
    let fault = format!(
        "RINGLAB_LOCKED_PREFIX={prefix} RINGLAB_BIN={} bash {}/fault.sh --prefix {prefix}",
        binary.display(),
        scripts.display()
    );
    let ctl = |n: NodeId| format!("{} ctl {}/node-{n}.sock", binary.display(), dir.display());
    let last = exp.nodes as NodeId;
    vec![
        ("isolate a node".into(), format!("{fault} isolate {last}")),
        ("heal every cut".into(), format!("{fault} heal")),
        (
            "split".into(),
            format!(
                "{fault} split 1{} {}",
                if last > 2 { ",2" } else { "" },
                (if last > 2 { 3 } else { 2 }..=last)
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        ),
        ("cut one way".into(), format!("{fault} cut 1 2 --oneway")),
        ("10% loss everywhere".into(), format!("{fault} loss all 10")),
        (
            "5 ± 2 ms of delay on node 2".into(),
            format!("{fault} delay 2 5 2"),
        ),
        ("every fault off".into(), format!("{fault} clear")),
        ("a node's membership".into(), format!("{} status", ctl(1))),
        ("its counters".into(), format!("{} stats", ctl(1))),
        (
            "200 msgs/s of 1 KiB for 10 s".into(),
            format!("{} load rate=200 size=1024 duration_ms=10000", ctl(1)),
        ),
        (
            "the checker over the records so far".into(),
            format!("{} check {}", binary.display(), dir.display()),
        ),
        (
            "a shell in node 1's namespace".into(),
            format!("ip netns exec {prefix}-n1 bash"),
        ),
    ]
}

/// Brings `exp`'s cluster up under `lock`'s prefix, prints what to do with it, and tears it
/// down when the person is done, `stop` is set, or the time is up.
pub fn run(exp: &Experiment, opts: &LabOpts, lock: &PrefixLock, stop: &AtomicBool) -> Result<()> {
    require_root()?;
    let scripts = Scripts::write()?;
    let mut topo = Topology::up(&scripts, &opts.binary, lock, exp)?;
    let key = if exp.key {
        Key::File(topo.write_key(&random_key()?)?)
    } else {
        Key::None
    };
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("creating {}", opts.dir.display()))?;
    let spec = local_spec(exp, &opts.binary, lock.prefix(), opts.dir.clone(), key);
    let mut cluster = Cluster::start(spec)?;
    let all: Vec<NodeId> = (1..=exp.nodes as NodeId).collect();
    let ring = cluster
        .wait_ring(&all, Duration::from_secs(30))
        .context("the first full ring")?;
    println!(
        "lab {} up: {} nodes on ring {}.{} ({:?}, {:?}), namespaces {}-n1 … {}-n{}; records in {}",
        lock.prefix(),
        exp.nodes,
        ring.rep,
        ring.seq,
        exp.transport,
        exp.totem.variant,
        lock.prefix(),
        lock.prefix(),
        exp.nodes,
        opts.dir.display()
    );
    println!("as root, in another terminal:");
    for (what, cmd) in commands(exp, &opts.binary, lock.prefix(), &scripts.dir, &opts.dir) {
        println!("  # {what}\n  {cmd}");
    }
    println!(
        "press Enter (or Ctrl-C) to tear the lab down; it goes by itself in {} min",
        opts.max_minutes
    );
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        let _ = tx.send(());
    });
    let deadline = Instant::now() + Duration::from_secs(opts.max_minutes * 60);
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        if rx.recv_timeout(Duration::from_millis(200)).is_ok() {
            break;
        }
    }
    println!("tearing lab {} down", lock.prefix());
    cluster.stop();
    drop(cluster);
    drop(topo);
    println!(
        "lab {} down; its records stay in {}",
        lock.prefix(),
        opts.dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_printed_commands_carry_the_prefix_and_name_real_nodes() {
        let exp: Experiment =
            toml::from_str("name = \"lab\"\nnodes = 5\nduration_ms = 1000\n").unwrap();
        let c = commands(
            &exp,
            Path::new("/bin/ringlab"),
            "rl7",
            Path::new("/tmp/s"),
            Path::new("/tmp/lab"),
        );
        let all: String = c
            .iter()
            .map(|(_, x)| x.as_str())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            all.contains("bash /tmp/s/fault.sh --prefix rl7 isolate 5"),
            "{all}"
        );
        assert!(all.contains("split 1,2 3,4,5"), "{all}");
        assert!(
            all.contains("/bin/ringlab ctl /tmp/lab/node-1.sock status"),
            "{all}"
        );
        assert!(all.contains("ip netns exec rl7-n1 bash"), "{all}");
        assert!(c.iter().all(|(_, x)| !x.contains("n6")));
    }
}
