//! The ssh backend's hosts and nodes: what [`Cluster`](ringlab_net::harness::Cluster) and
//! the namespace scripts do on this machine, done on the inventory's hosts over ssh.
//!
//! On each host the run makes one directory of its own, `DIR/ringlab-<prefix>-<host>`
//! (`mkdir`: one that exists is refused, never reused), and one nftables table, `inet
//! <prefix>` (one that exists is refused). The binary and the key go into the directory;
//! each repetition's configs, sockets, records and state into `rep-N/` under it. Nodes
//! are started detached (`setsid`), their PIDs written beside them; every signal goes to a
//! recorded PID and only after checking that the process's command line is in the run's
//! directory, so nothing the run did not start is ever touched. Teardown (on drop, errors
//! and signals included) stops the run's nodes, deletes its table and its directory, and
//! closes the connections.

use super::clock::{self, Offset};
use super::inventory::Inventory;
use super::nft::NetState;
use super::ssh::{quote, Ssh};
use crate::experiment::Experiment;
use crate::fault::NetworkFault;
use anyhow::{bail, Context, Result};
use ringlab_net::config::{NodeConfig, Peer};
use ringlab_net::control::{Ack, Request, StatsReply, StatusReply};
use ringlab_net::harness::{
    append_fault, append_record, wait_quiet_with, wait_ring_with, HarnessError,
};
use ringlab_net::monotonic_ns;
use ringlab_records::{Body, Record, Writer};
use ringlab_ring::{NodeId, RingId};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The ring's UDP port on the hosts (the first node of a host; the next ones count up).
pub const PORT: u16 = 5405;

/// How far ahead of the call a network fault is scheduled on the hosts: enough for the
/// command to reach every host over its open shell.
pub const FAULT_LEAD_NS: u64 = 40_000_000;

/// The hosts of one run, connected.
pub struct SshHosts {
    /// The inventory.
    pub inv: Inventory,
    conns: Vec<Ssh>,
    /// The run's directory on each host.
    dirs: Vec<String>,
    /// Whether the run made it (and so removes it).
    made: Vec<bool>,
    prefix: String,
    control_dir: PathBuf,
    dry_run: bool,
    /// Each host's machine (kernel, cpus, cpu, hostname), as it said at the start.
    pub machines: Vec<std::collections::BTreeMap<String, String>>,
}

/// A host's clock against the controller's over one repetition, in summary.json.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostClock {
    /// The host's name.
    pub host: String,
    /// The nodes it ran.
    pub nodes: Vec<NodeId>,
    /// Before the repetition.
    pub before: Offset,
    /// After it.
    pub after: Offset,
    /// What the repetition's records were mapped with.
    pub used: Offset,
}

impl SshHosts {
    /// Connects to every host, checks it (its ring address on its interface, nft usable,
    /// no directory or table of this prefix), makes the run's directory and uploads the
    /// binary and the key. With `dry_run` every command is printed and none runs.
    pub fn connect(
        inv: Inventory,
        prefix: &str,
        binary: &Path,
        key: Option<&[u8]>,
        dry_run: bool,
    ) -> Result<Self> {
        // Several runs of one prefix at once (an interleaved sweep's configurations) each
        // get their own name on the hosts: the prefix, then `prefix_2`, `prefix_3` ...
        static RUNS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prefix = &if k == 0 {
            prefix.to_string()
        } else {
            format!("{prefix}_{}", k + 1)
        };
        let control_dir = private_dir(prefix)?;
        let mut h = Self {
            dirs: inv
                .hosts
                .iter()
                .map(|x| {
                    x.dir
                        .join(format!("ringlab-{prefix}-{}", x.name))
                        .display()
                        .to_string()
                })
                .collect(),
            made: vec![false; inv.hosts.len()],
            conns: vec![],
            prefix: prefix.into(),
            control_dir,
            dry_run,
            inv,
            machines: vec![],
        };
        for host in &h.inv.hosts {
            h.conns.push(Ssh::connect(host, &h.control_dir, dry_run)?);
        }
        let bin = std::fs::read(binary)
            .with_context(|| format!("reading the binary {}", binary.display()))?;
        for i in 0..h.conns.len() {
            let (c, d) = (&h.conns[i], quote(&h.dirs[i]));
            let host = &c.host;
            let nft = h.nft(i);
            let table = &h.prefix;
            let check = format!(
                "set -e; \
                 if [ -e {d} ]; then echo \"{d} exists (another run's, or a killed one's): not touching it\" >&2; exit 3; fi; \
                 if ! {nft} list tables >/dev/null; then echo 'nft does not run here (install nftables; a user allowed to run nft, or sudo = true)' >&2; exit 4; fi; \
                 if {nft} list table inet {table} >/dev/null 2>&1; then echo 'nftables table inet {table} exists: not touching it' >&2; exit 5; fi; \
                 if ! ip -o addr show dev {iface} | grep -qwF -- {addr}; then echo 'ring_addr {addr} is not on iface {iface}' >&2; exit 6; fi; \
                 mkdir -m 700 {d}",
                iface = quote(&host.iface),
                addr = quote(&host.ring_addr.to_string()),
            );
            c.run(&check)?;
            h.made[i] = true;
            let m = c.run(
                "echo \"kernel=$(uname -r)\"; echo \"cpus=$(nproc)\"; \
                 echo \"cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')\"; \
                 echo \"hostname=$(hostname)\"",
            )?;
            h.machines.push(
                m.lines()
                    .filter_map(|l| l.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.trim().to_string()))
                    .collect(),
            );
            c.upload(&bin, &format!("{}/ringlab", h.dirs[i]), 0o755)?;
            if let Some(k) = key {
                c.upload(k, &format!("{}/cluster.key", h.dirs[i]), 0o600)?;
            }
        }
        Ok(h)
    }

    /// The nft command on host `i`.
    fn nft(&self, i: usize) -> &'static str {
        if self.conns[i].host.sudo {
            "sudo -n nft"
        } else {
            "nft"
        }
    }

    /// The binary on host `i`.
    fn bin(&self, i: usize) -> String {
        format!("{}/ringlab", self.dirs[i])
    }

    /// Measures every host's clock offset (the hosts in parallel).
    pub fn clocks(&self) -> Result<Vec<Offset>> {
        if self.dry_run {
            for (i, c) in self.conns.iter().enumerate() {
                c.try_run(&format!("{} clock --serve", quote(&self.bin(i))), &[])?;
            }
            return Ok(vec![Offset::default(); self.conns.len()]);
        }
        self.each(&|i, c| {
            let mut ch = c.channel(&format!("{} clock --serve", quote(&self.bin(i))))?;
            clock::measure(&mut ch, &c.host.name)
        })
    }

    /// Runs `f` for every host at once (a thread each); returns the results in host order.
    fn each<T: Send>(&self, f: &(dyn Fn(usize, &Ssh) -> Result<T> + Sync)) -> Result<Vec<T>> {
        std::thread::scope(|s| {
            let hs: Vec<_> = self
                .conns
                .iter()
                .enumerate()
                .map(|(i, c)| s.spawn(move || f(i, c)))
                .collect();
            hs.into_iter()
                .map(|h| h.join().expect("a host's thread"))
                .collect()
        })
    }

    /// Runs `cmd(i)` on every host at once; returns their stdouts in host order.
    fn on_all(&self, cmd: &(dyn Fn(usize) -> (String, Vec<u8>) + Sync)) -> Result<Vec<String>> {
        self.each(&|i, c| {
            let (line, input) = cmd(i);
            c.run_with(&line, &input)
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        })
    }

    /// The teardown of host `i`: the run's nodes (by recorded PID, checked), its table, its
    /// directory.
    fn teardown_cmd(&self, i: usize) -> String {
        let d = quote(&self.dirs[i]);
        let nft = self.nft(i);
        let t = &self.prefix;
        format!(
            "for f in {d}/rep-*/node-*.pid; do [ -f \"$f\" ] || continue; p=$(cat \"$f\"); \
             case \"$p\" in ''|*[!0-9]*) continue;; esac; \
             if grep -aqF -- {d}/ /proc/$p/cmdline 2>/dev/null; then kill -CONT $p 2>/dev/null; kill -KILL $p 2>/dev/null; fi; done; \
             if {nft} list table inet {t} >/dev/null 2>&1; then {nft} delete table inet {t}; fi; \
             rm -rf -- {d}"
        )
    }
}

impl Drop for SshHosts {
    fn drop(&mut self) {
        for i in 0..self.conns.len() {
            if !self.made[i] {
                continue;
            }
            if let Err(e) = self.conns[i].run(&self.teardown_cmd(i)) {
                eprintln!(
                    "ringlab run: teardown on host {}: {e:#}",
                    self.conns[i].host.name
                );
            }
        }
        self.conns.clear();
        let _ = std::fs::remove_dir_all(&self.control_dir);
    }
}

/// A new directory only this user can enter, for the ssh control sockets.
fn private_dir(prefix: &str) -> Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt as _;
    let mut tag = [0u8; 6];
    rustix::rand::getrandom(&mut tag, rustix::rand::GetRandomFlags::empty())
        .context("reading random bytes")?;
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("ringlab-ssh-{prefix}-{tag}"));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// One repetition's nodes on the hosts.
pub struct RemoteCluster<'a> {
    hosts: &'a SshHosts,
    rep: u32,
    nodes: usize,
    totem: ringlab_ring::Config,
    pids: Vec<Option<u32>>,
    incs: Vec<u32>,
    /// Where the repetition's records go on the controller.
    local: PathBuf,
    harness_records: PathBuf,
    before: Vec<Offset>,
    net: NetState,
    /// The clocks, once measured after the repetition.
    pub clocks: Vec<HostClock>,
    /// Each network fault's window on the hosts.
    pub applied: Vec<Applied>,
}

/// When a network fault took effect: on every host between `t_ns` (the earliest reading
/// just before a host's change, the fault's record) and `done_ns` (the latest just after
/// one), on the controller's clock.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The fault's time.
    pub t_ns: u64,
    /// When the last host had made its change.
    pub done_ns: u64,
    /// Each host's reading before its change, in host order.
    pub hosts_t_ns: Vec<u64>,
    /// Each host's reading after it.
    pub hosts_done_ns: Vec<u64>,
}

impl<'a> RemoteCluster<'a> {
    /// Measures the clocks, writes every node's config on its host and starts the nodes.
    pub fn start(hosts: &'a SshHosts, rep: u32, exp: &Experiment, local: &Path) -> Result<Self> {
        let before = hosts.clocks()?;
        let mut c = Self {
            hosts,
            rep,
            nodes: exp.nodes,
            totem: exp.totem.clone(),
            pids: vec![None; exp.nodes],
            incs: vec![0; exp.nodes],
            local: local.into(),
            harness_records: local.join("harness.jsonl"),
            before,
            net: NetState::default(),
            clocks: vec![],
            applied: vec![],
        };
        let configs: Vec<(usize, Vec<(NodeId, String)>)> = (0..hosts.conns.len())
            .map(|i| {
                let cfgs = hosts.inv.hosts[i]
                    .nodes
                    .iter()
                    .map(|&n| Ok((n, toml::to_string(&c.config(exp, n))?)))
                    .collect::<Result<Vec<_>>>()?;
                Ok((i, cfgs))
            })
            .collect::<Result<_>>()?;
        for (i, cfgs) in &configs {
            let conn = &hosts.conns[*i];
            let d = c.dir(*i);
            conn.run(&format!("mkdir -m 700 {}", quote(&d)))?;
            for (n, text) in cfgs {
                conn.upload(text.as_bytes(), &format!("{d}/node-{n}.toml"), 0o600)?;
            }
        }
        let all: Vec<NodeId> = (1..=exp.nodes as NodeId).collect();
        c.launch(&all)?;
        for &n in &all {
            c.await_control(n)?;
        }
        Ok(c)
    }

    /// The repetition's directory on host `i`.
    fn dir(&self, i: usize) -> String {
        format!("{}/rep-{}", self.hosts.dirs[i], self.rep)
    }

    fn host(&self, n: NodeId) -> usize {
        self.hosts.inv.host_of(n)
    }

    fn config(&self, exp: &Experiment, n: NodeId) -> NodeConfig {
        let i = self.host(n);
        let d = PathBuf::from(self.dir(i));
        let inv = &self.hosts.inv;
        NodeConfig {
            node_id: n,
            bind: inv.hosts[i].ring_addr,
            port: PORT,
            transport: exp.transport,
            mcast_group: if inv.hosts[i].ring_addr.is_ipv4() {
                "239.77.0.1".parse().expect("an address")
            } else {
                "ff12::7701".parse().expect("an address")
            },
            nodes: (1..=exp.nodes as NodeId)
                .map(|id| {
                    let (addr, port) = inv.endpoint(id, PORT);
                    Peer {
                        id,
                        addr,
                        port: (port != PORT).then_some(port),
                    }
                })
                .collect(),
            events: Some(d.join(format!("node-{n}.jsonl"))),
            record_messages: exp.record_messages,
            record_every: exp.record_every,
            control: d.join(format!("node-{n}.sock")),
            state_dir: d.join("state").join(format!("node-{n}")),
            key_file: exp
                .key
                .then(|| PathBuf::from(&self.hosts.dirs[i]).join("cluster.key")),
            recv_buffer: Some(4 << 20),
            send_buffer: Some(4 << 20),
            batched_io: true,
            services: exp.services.clone(),
            max_fill_bytes: ringlab_net::config::DEFAULT_MAX_FILL_BYTES,
            service_config: exp.service_config.clone(),
            totem: exp.totem.clone(),
        }
    }

    /// Starts `nodes` (each host's at once, the hosts in parallel); records each start at
    /// the host's clock reading just before it, mapped onto the controller's.
    fn launch(&mut self, nodes: &[NodeId]) -> Result<()> {
        let outs = self.hosts.on_all(&|i| {
            let d = quote(&self.dir(i));
            let bin = quote(&self.hosts.bin(i));
            let mut s = format!("cd {d}");
            for &n in nodes.iter().filter(|&&n| self.host(n) == i) {
                s += &format!(
                    " && t=$({bin} clock) && (setsid {bin} node --config {d}/node-{n}.toml >>node-{n}.log 2>&1 </dev/null & echo $! >node-{n}.pid) && echo node={n} t_ns=$t pid=$(cat node-{n}.pid)"
                );
            }
            (s, vec![])
        })?;
        for (i, out) in outs.iter().enumerate() {
            for line in out.lines() {
                let field = |k: &str| {
                    line.split_whitespace()
                        .find_map(|w| w.strip_prefix(k)?.parse::<u64>().ok())
                };
                let (Some(n), Some(t), Some(pid)) = (field("node="), field("t_ns="), field("pid="))
                else {
                    continue;
                };
                self.pids[n as usize - 1] = Some(pid as u32);
                self.record_fault(
                    self.before[i].to_controller(t),
                    "start",
                    vec![n as NodeId],
                    vec![],
                );
            }
        }
        if !self.hosts.dry_run {
            for &n in nodes {
                if self.pids[n as usize - 1].is_none() {
                    bail!(
                        "host {}: node {n} did not start",
                        self.hosts.inv.hosts[self.host(n)].name
                    );
                }
            }
        }
        Ok(())
    }

    fn await_control(&mut self, n: NodeId) -> Result<()> {
        if self.hosts.dry_run {
            return Ok(());
        }
        let deadline = monotonic_ns() + 10_000_000_000;
        let mut last = String::new();
        while monotonic_ns() < deadline {
            match self.status(n) {
                Ok(s) => {
                    self.incs[n as usize - 1] = s.inc;
                    return Ok(());
                }
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let i = self.host(n);
        bail!(
            "host {}: node {n}'s control socket never answered ({last}); see {}/node-{n}.log there",
            self.hosts.inv.hosts[i].name,
            self.dir(i)
        )
    }

    /// Sends `req` to node `n` (through `ringlab ctl` on its host).
    pub fn call<R: DeserializeOwned>(&self, n: NodeId, req: &Request) -> Result<R, HarnessError> {
        let i = self.host(n);
        let cmd = format!(
            "{} ctl {}/node-{n}.sock {}",
            quote(&self.hosts.bin(i)),
            quote(&self.dir(i)),
            quote(&req.to_line())
        );
        let out = self.hosts.conns[i]
            .try_run(&cmd, &[])
            .map_err(|e| HarnessError::Node(format!("{e:#}")))?;
        if self.hosts.dry_run {
            return Err(HarnessError::Node("dry run".into()));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Err(HarnessError::Node(format!(
                "host {}: node {n}: {}",
                self.hosts.inv.hosts[i].name,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(ringlab_net::control::decode(&text)?)
    }

    /// Node `n`'s membership.
    pub fn status(&self, n: NodeId) -> Result<StatusReply, HarnessError> {
        self.call(n, &Request::Status)
    }

    /// Node `n`'s counters.
    pub fn stats(&self, n: NodeId) -> Result<StatsReply, HarnessError> {
        self.call(n, &Request::Stats)
    }

    /// Whether node `n` runs (as far as the runner's own signals go: a node that died by
    /// itself shows as a control call that fails).
    pub fn is_running(&self, n: NodeId) -> bool {
        self.pids[n as usize - 1].is_some()
    }

    /// Waits for one ring of exactly `ids`.
    pub fn wait_ring(&self, ids: &[NodeId], timeout: Duration) -> Result<RingId, HarnessError> {
        if self.hosts.dry_run {
            return Ok(RingId::default());
        }
        wait_ring_with(ids, timeout, &mut |id| self.status(id))
    }

    /// Waits until the nodes are quiet (see [`wait_quiet_with`]).
    pub fn wait_quiet(&self, timeout: Duration) -> bool {
        if self.hosts.dry_run {
            return true;
        }
        let ids: Vec<NodeId> = (1..=self.nodes as NodeId).collect();
        wait_quiet_with(&ids, timeout, &mut |id| {
            if self.is_running(id) {
                self.stats(id).ok()
            } else {
                None
            }
        })
    }

    /// Sends `sig` to node `n`'s recorded PID, checked to be the run's node; `wait`: then
    /// waits (up to 2 s) until it is gone.
    fn signal(&self, n: NodeId, sig: &str, wait: bool) -> Result<()> {
        let Some(pid) = self.pids[n as usize - 1] else {
            return Ok(());
        };
        let i = self.host(n);
        let d = quote(&format!("{}/", self.hosts.dirs[i]));
        let mut cmd = format!(
            "if grep -aqF -- {d} /proc/{pid}/cmdline 2>/dev/null; then kill -{sig} {pid}; fi"
        );
        if wait {
            cmd += &format!("; i=0; while [ $i -lt 200 ] && grep -aqF -- {d} /proc/{pid}/cmdline 2>/dev/null; do sleep 0.01; i=$((i+1)); done");
        }
        self.hosts.conns[i].run(&cmd).map(|_| ())
    }

    /// SIGKILLs node `n` and records the crash.
    pub fn kill(&mut self, n: NodeId) -> Result<()> {
        if self.pids[n as usize - 1].is_none() {
            return Ok(());
        }
        self.signal(n, "KILL", true)?;
        self.pids[n as usize - 1] = None;
        append_record(
            &self.harness_records,
            &Record {
                t_ns: monotonic_ns(),
                node: n,
                inc: self.incs[n as usize - 1],
                body: Body::Crash {},
            },
        );
        Ok(())
    }

    /// Stops (SIGSTOP) or continues (SIGCONT) node `n`.
    pub fn pause(&mut self, n: NodeId, pause: bool) -> Result<()> {
        self.signal(n, if pause { "STOP" } else { "CONT" }, false)
    }

    /// Starts node `n` again (a new incarnation).
    pub fn spawn(&mut self, n: NodeId) -> Result<()> {
        self.launch(&[n])?;
        self.await_control(n)
    }

    /// Carries out a network fault with nftables on every host at once; returns its time
    /// on the controller's clock: the earliest of the hosts' readings just before their
    /// change.
    pub fn fault(&mut self, f: &NetworkFault) -> Result<u64> {
        self.net.apply(f, self.nodes)?;
        let inv = &self.hosts.inv;
        // Every host makes its change at one agreed instant, FAULT_LEAD_NS from now (on its
        // own clock, through its offset), rather than when its command happens to arrive.
        let at = monotonic_ns() + FAULT_LEAD_NS;
        let outs = self.hosts.on_all(&|i| {
            let script = self.net.script(
                &self.hosts.prefix,
                &inv.hosts[i].nodes,
                &|n| inv.endpoint(n, PORT),
                self.nodes,
            );
            (
                // nft starts (its process, libraries and netlink socket) while the clock
                // waits for the instant; the rules reach it only then, so what is left at
                // the instant is parsing and one commit.
                format!(
                    "tf=$(mktemp) && {{ {b} clock --until {} >\"$tf\" && cat; }} | {} -f - && echo t_ns=$(cat \"$tf\") done_ns=$({b} clock); rc=$?; rm -f \"$tf\"; exit $rc",
                    self.before[i].to_host(at),
                    self.hosts.nft(i),
                    b = quote(&self.hosts.bin(i)),
                ),
                script.into_bytes(),
            )
        })?;
        let read = |key: &str| -> Vec<u64> {
            outs.iter()
                .enumerate()
                .filter_map(|(i, o)| {
                    o.split_whitespace()
                        .find_map(|w| w.strip_prefix(key)?.parse::<u64>().ok())
                        .map(|t| self.before[i].to_controller(t))
                })
                .collect()
        };
        let (ts, dones) = (read("t_ns="), read("done_ns="));
        let t = ts.iter().copied().min();
        if let (Some(t), Some(&done)) = (t, dones.iter().max()) {
            // The fault took effect on every host between the earliest reading before a
            // change and the latest after one.
            self.applied.push(Applied {
                t_ns: t,
                done_ns: done,
                hosts_t_ns: ts.clone(),
                hosts_done_ns: dones.clone(),
            });
        }
        match t {
            Some(t) => Ok(t),
            None if self.hosts.dry_run => Ok(monotonic_ns()),
            None => bail!("no host printed the fault's time"),
        }
    }

    /// Appends a record of the runner's (a fault) to the repetition's harness records.
    pub fn record_fault(
        &self,
        t_ns: u64,
        action: &str,
        targets: Vec<NodeId>,
        groups: Vec<Vec<NodeId>>,
    ) {
        append_fault(&self.harness_records, t_ns, action, targets, groups);
    }

    /// Asks every running node to quit, waits for them as the local harness does, then
    /// kills what is left.
    pub fn stop(&mut self) {
        for n in 1..=self.nodes as NodeId {
            if self.is_running(n) {
                let _ = self.call::<Ack>(n, &Request::Quit);
            }
        }
        let drain = ringlab_net::node::QUIT_DRAIN_TOKENS.saturating_mul(self.totem.token);
        let deadline = monotonic_ns().saturating_add(drain.saturating_add(3_000) * 1_000_000);
        for n in 1..=self.nodes as NodeId {
            let Some(pid) = self.pids[n as usize - 1] else {
                continue;
            };
            let i = self.host(n);
            let d = quote(&format!("{}/", self.hosts.dirs[i]));
            let left_ms = deadline.saturating_sub(monotonic_ns()) / 1_000_000;
            let wait = format!(
                "i=0; while [ $i -lt {} ] && grep -aqF -- {d} /proc/{pid}/cmdline 2>/dev/null; do sleep 0.01; i=$((i+1)); done",
                left_ms / 10
            );
            let _ = self.hosts.conns[i].run(&wait);
            let _ = self.signal(n, "KILL", true);
            self.pids[n as usize - 1] = None;
        }
    }

    /// Measures the clocks again, downloads every node's records and log, keeps the host's
    /// own records in `host-clock/` and writes them mapped onto the controller's clock
    /// (`node-N.jsonl`, beside the runner's `harness.jsonl`); returns all of them, mapped.
    /// A delivery's `sent_t_ns`, taken on its sender's host, is mapped with that host's
    /// offset, so a latency across hosts is corrected too.
    pub fn records(&mut self) -> Result<Vec<Record>> {
        let after = self.hosts.clocks()?;
        let inv = &self.hosts.inv;
        self.clocks = inv
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| HostClock {
                host: h.name.clone(),
                nodes: h.nodes.clone(),
                before: self.before[i],
                after: after[i],
                used: Offset::across(&self.before[i], &after[i]),
            })
            .collect();
        let raw_dir = self.local.join("host-clock");
        std::fs::create_dir_all(&raw_dir)?;
        let mut out = Vec::new();
        for n in 1..=self.nodes as NodeId {
            let i = self.host(n);
            let conn = &self.hosts.conns[i];
            let log = conn.download(&format!("{}/node-{n}.log", self.dir(i)))?;
            std::fs::write(self.local.join(format!("node-{n}.log")), log)?;
            let bytes = conn.download(&format!("{}/node-{n}.jsonl", self.dir(i)))?;
            let raw = raw_dir.join(format!("node-{n}.jsonl"));
            std::fs::write(&raw, &bytes)?;
            let mut recs = Vec::new();
            ringlab_records::read_from(&raw, &bytes[..], &mut recs)?;
            for r in &mut recs {
                r.t_ns = self.clocks[i].used.to_controller(r.t_ns);
                if let Body::Deliver { id, sent_t_ns, .. } = &mut r.body {
                    let from = inv
                        .hosts
                        .iter()
                        .position(|h| h.nodes.contains(&id.node))
                        .unwrap_or(i);
                    *sent_t_ns = self.clocks[from].used.to_controller(*sent_t_ns);
                }
            }
            let mut w = Writer::create(&self.local.join(format!("node-{n}.jsonl")))?;
            for r in &recs {
                w.write(r)?;
            }
            w.flush()?;
            out.extend(recs);
        }
        std::fs::write(
            self.local.join("hosts.json"),
            serde_json::to_string_pretty(&self.clocks)?,
        )?;
        std::fs::write(
            self.local.join("faults-applied.json"),
            serde_json::to_string_pretty(&self.applied)?,
        )?;
        if self.harness_records.exists() {
            ringlab_records::read_file(&self.harness_records, &mut out)?;
        }
        Ok(out)
    }

    /// The repetition's clock uncertainty: the largest of its hosts' (a span between two
    /// hosts' readings is within twice this).
    pub fn uncertainty_ns(&self) -> u64 {
        self.clocks
            .iter()
            .map(|c| c.used.uncertainty_ns)
            .max()
            .unwrap_or(0)
    }
}

impl Drop for RemoteCluster<'_> {
    fn drop(&mut self) {
        for n in 1..=self.nodes as NodeId {
            if self.pids[n as usize - 1].is_some() {
                let _ = self.signal(n, "CONT", false);
                let _ = self.signal(n, "KILL", false);
                self.pids[n as usize - 1] = None;
            }
        }
        // The repetition's directory (state, sockets, records already fetched) goes; the
        // run's directory goes with the hosts.
        for i in 0..self.hosts.conns.len() {
            let _ = self.hosts.conns[i].run(&format!("rm -rf -- {}", quote(&self.dir(i))));
        }
    }
}
