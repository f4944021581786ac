//! `ringlab`: one binary for the testbed.
//!
//! Subcommands: `sim` (seeded simulated clusters judged by the checker), `check` (the
//! checker over record files from any run), `node` (one real node), `ctl` (its control
//! channel), `cluster` (N real nodes on loopback, loaded and measured), `blast` (raw UDP, the
//! baseline), `run` (an experiment in network namespaces), `sweep` (a grid of knobs), `compare`
//! (tables and plots across runs), `relay` (the pnet link impairer), `clock` and `kml-digest`
//! (a real directory's tree digest).
// The command line: real time, processes and sockets (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod blast;
mod cluster;
mod dissector;
mod loopback_capture;
mod sim_capture;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use rayon::prelude::*;
use ringlab_ring::{Config, Variant};
use ringlab_sim::{check, run, Faults, NetConfig, RunConfig, RunReport, SimSummary};
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "ringlab",
    version,
    about = "A testbed for token-ring group communication"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Runs seeded simulated clusters through faults and checks every run.
    Sim(SimArgs),
    /// Runs one node of a real cluster.
    Node {
        /// The node's TOML config.
        #[arg(long)]
        config: PathBuf,
    },
    /// Runs one node on corosync instead of ringlab's ring: the same config, control
    /// protocol and event records (corosync and libcpg4 must be installed).
    CorosyncNode {
        /// The node's TOML config (the one a ringlab node takes).
        #[arg(long)]
        config: PathBuf,
    },
    /// Sends a command to a node's control socket: status, stats, leave, quit, stop_load,
    /// load [rate=N size=N sizes=N,N safe=true count=N duration_ms=N], svc SERVICE VERB
    /// [key=value ...] (a service's own commands, e.g. svc checkpoint write name=c size=100,
    /// svc checkpoint status), or a raw JSON object.
    Ctl {
        /// The node's control socket.
        socket: PathBuf,
        /// The command.
        cmd: String,
        /// key=value arguments.
        args: Vec<String>,
        /// Prints the reply as JSON (`status` prints a table without it; every other
        /// command prints JSON either way).
        #[arg(long)]
        json: bool,
    },
    /// Starts N nodes on loopback (127.0.0.x), waits for one ring, runs a short load and
    /// prints membership, throughput and latency. Needs no root.
    Cluster(ClusterArgs),
    /// Measures raw UDP on loopback: one sender, N receivers, no ordering.
    Blast {
        /// Receivers.
        #[arg(long, default_value_t = 4)]
        receivers: usize,
        /// Datagram size.
        #[arg(long, default_value_t = 1024)]
        size: usize,
        /// Seconds.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Port.
        #[arg(long, default_value_t = 6405)]
        port: u16,
        /// Transport: unicast copies to each receiver, or one multicast.
        #[arg(long, value_enum, default_value = "unicast")]
        transport: TransportArg,
    },
    /// Raw UDP, each end its own process: `recv` prints `ready` once bound and, at the
    /// end, what it got (JSON); `send` sends datagrams as fast as it can, to one address,
    /// to several (one sendmmsg per copy to each) or to a multicast group, and prints what
    /// it sent. `ringlab run`'s raw baseline runs them in its namespaces.
    Flow {
        /// `recv` or `send`.
        #[arg(value_enum)]
        end: FlowEnd,
        /// recv: the address to bind (with --group: its port, and the interface to join on).
        #[arg(long)]
        bind: Option<std::net::SocketAddr>,
        /// recv: a multicast group to join and receive.
        #[arg(long)]
        group: Option<std::net::Ipv4Addr>,
        /// send: a receiver's address (repeat for a fan-out; a multicast group alone).
        #[arg(long)]
        to: Vec<std::net::SocketAddr>,
        /// send: the interface address multicasts go out of.
        #[arg(long)]
        iface: Option<std::net::Ipv4Addr>,
        /// send: datagram size.
        #[arg(long, default_value_t = 1400)]
        size: usize,
        /// send: seconds of sending; recv: the most seconds it waits.
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
    },
    /// Captures every frame on the given interfaces (the run's bridges, in its switch
    /// namespace) into a pcapng file until SIGTERM; prints a JSON report. `ringlab run
    /// --capture` starts it.
    Capture {
        /// An interface to capture (repeat for several: one pcapng interface each).
        #[arg(long = "iface", required = true)]
        ifaces: Vec<String>,
        /// The pcapng file.
        #[arg(long)]
        out: PathBuf,
        /// The cap on the frames' bytes.
        #[arg(long, default_value_t = ringlab_sim::capture::DEFAULT_MAX_BYTES)]
        max_bytes: u64,
        /// Stops by itself after this many seconds.
        #[arg(long, default_value_t = 3600)]
        max_seconds: u64,
    },
    /// Prints or installs the Wireshark dissector for ringlab's wire format
    /// (dissector/ringlab.lua, built into the binary).
    Dissector {
        /// Copies it to the personal Lua plugins folder
        /// (~/.local/lib/wireshark/plugins/ringlab.lua) and prints the path.
        #[arg(long, conflicts_with = "print")]
        install: bool,
        /// Prints the script on stdout.
        #[arg(long)]
        print: bool,
    },
    /// Runs an experiment (experiments/*.toml) in network namespaces: topology, nodes, load,
    /// fault schedule, recovery measured, checker over every run. Needs root.
    Run(ExperimentArgs),
    /// Brings an experiment's cluster up in namespaces (root) and leaves it running, with
    /// the commands to break it and look at it printed, until Enter, Ctrl-C or --max-minutes:
    /// a lab to work in by hand, as Mininet's CLI is (the file's faults and load are not
    /// applied). Then everything it made is torn down; the records stay.
    Lab {
        /// The experiment file (its nodes, shape, transport, knobs, services, key).
        experiment: PathBuf,
        /// Prefix of its namespaces (default: a fresh `rl<PID>`).
        #[arg(long)]
        prefix: Option<String>,
        /// Where the nodes' configs, sockets and records go (default: `/tmp/ringlab-lab-<prefix>`).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The lab goes away by itself after this many minutes.
        #[arg(long, default_value_t = 60)]
        max_minutes: u64,
    },
    /// Runs an experiment over a grid of one or two knobs (--param token=200,500,1000), then
    /// compares the configurations. Needs root.
    Sweep {
        /// knob=v1,v2,...: a knob of the totem table, or nodes, transport, shape, loss_pct, loss_burst, duration_ms, load.rate,
        /// load.size, load.senders, records (all,none,N: one message in N), record_messages,
        /// record_every, implementation (ringlab,corosync), store.bytes,
        /// store.value_size, or a service's key (service_config.store.design,
        /// resources.policy). At most two.
        #[arg(long = "param", required = true)]
        params: Vec<String>,
        /// Interleave the configurations repetition by repetition (rep 1 of each, then rep
        /// 2 of each ...) instead of running each one's repetitions in a row, so that the
        /// machine's noise falls on all of them alike. On by default when a knob is
        /// `implementation`.
        #[arg(long)]
        interleave: bool,
        #[command(flatten)]
        exp: ExperimentArgs,
    },
    /// Compares runs side by side: tables of recovery phases and throughput, and with --out,
    /// compare.md, recovery.svg (box plots per phase), throughput.svg (one timeline per
    /// configuration, faults named and shaded) and, for a sweep of one numeric knob,
    /// sweep.svg (membership against the knob's value).
    Compare {
        /// Run directories (with summary.json), or directories of them.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where to write compare.md and the plots.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Writes one self-contained HTML page (no network needed to view it) of one or more
    /// runs: the experiments and machine, recovery phases per fault and configuration, a
    /// timeline per repetition, recovery box plots, and the checker's verdict with the
    /// commands that replay it. `ringlab run` and `ringlab sweep` write one next to
    /// summary.json.
    Report {
        /// Run directories (with summary.json), or directories of them.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// Where to write report.html.
        #[arg(long)]
        out: PathBuf,
    },
    /// Prints CLOCK_MONOTONIC in ns: the clock of every event record (fault.sh stamps its
    /// faults with it).
    Clock {
        /// Answer every line read on stdin with the clock, until end of input: what the ssh
        /// backend's offset estimate talks to on each host.
        #[arg(long)]
        serve: bool,
        /// Wait until the clock reaches this reading (ns), then print it: how the ssh backend
        /// makes a fault's change on every host at one agreed instant.
        #[arg(long, value_name = "NS", conflicts_with = "serve")]
        until: Option<u64>,
    },
    /// Relays frames between two interfaces with seeded delay, jitter, loss, duplication and
    /// reordering (pnet, AF_PACKET; needs CAP_NET_RAW). fault.sh starts it where netem is
    /// missing. Stops after --max-seconds, on SIGTERM or on Ctrl-C.
    Relay {
        /// One interface.
        #[arg(long)]
        a: String,
        /// The other interface.
        #[arg(long)]
        b: String,
        /// One-way delay, ms.
        #[arg(long, default_value_t = 0.0)]
        delay_ms: f64,
        /// Uniform jitter, ± ms.
        #[arg(long, default_value_t = 0.0)]
        jitter_ms: f64,
        /// Percentage of frames lost: the mean loss, uniform or in bursts.
        #[arg(long, default_value_t = 0.0)]
        loss_pct: f64,
        /// Mean length of a burst of losses, in frames, per directed pair of IPv4 endpoints
        /// (Gilbert–Elliott); 0 or 1: uniform loss.
        #[arg(long, default_value_t = 0.0)]
        loss_burst: f64,
        /// Loses frames only on their way from --b to --a (fault.sh: toward the node), so
        /// that relays on every node's port lose each hop once.
        #[arg(long)]
        loss_to_a_only: bool,
        /// Percentage of frames duplicated.
        #[arg(long, default_value_t = 0.0)]
        duplicate_pct: f64,
        /// Percentage of frames held back so that later ones overtake them.
        #[arg(long, default_value_t = 0.0)]
        reorder_pct: f64,
        /// How long a held-back frame waits, ms.
        #[arg(long, default_value_t = 10.0)]
        reorder_gap_ms: f64,
        /// Seed of the impairments.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Stops by itself after this long.
        #[arg(long, default_value_t = 3600)]
        max_seconds: u64,
    },
    /// Prints the digest of a real directory as a service that keeps files lists its tree
    /// (hex): compare a node's `STATE_DIR/kml` with `tree` of `ctl SOCK svc kml status`.
    /// Symbolic links are never followed. Exits 2 when the directory cannot be read.
    KmlDigest {
        /// The directory.
        dir: PathBuf,
    },
    /// Checks event-record files (JSON lines) from any run: every directory below the paths
    /// that holds record files (a simulator seed, a run's repetition) is judged on its own.
    /// Exits 1 on a violation, 2 when there are no records (or a run directory has none).
    Check {
        /// Record files, or directories searched all the way down.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Prints one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// What `run` and `sweep` share.
#[derive(clap::Args)]
struct ExperimentArgs {
    /// The experiment file.
    experiment: PathBuf,
    /// Repetitions (overrides the file).
    #[arg(long)]
    reps: Option<u32>,
    /// Results root: writes `<out>/<name>/<timestamp>/` (a sweep: `<out>/<name>-sweep/<timestamp>/`).
    #[arg(long, default_value = "results")]
    out: PathBuf,
    /// Prefix of every namespace, link and nftables table the run makes: 1-10 characters,
    /// a-z then a-z0-9. Default: a fresh one, `rl<PID>`. The run holds it (a lock in
    /// `/run/ringlab-<prefix>.lock`); a prefix another run holds is refused.
    #[arg(long)]
    prefix: Option<String>,
    /// Run on the hosts of this inventory over ssh instead of in namespaces on this machine
    /// (the `ssh` backend; see README "Running on real machines").
    #[arg(long, value_name = "INVENTORY")]
    hosts: Option<PathBuf>,
    /// With --hosts: print every remote command the run would make, run none of them, and
    /// write no results.
    #[arg(long, requires = "hosts")]
    dry_run: bool,
    /// Captures every frame that crosses the bridge in each repetition into
    /// records/rep-N/capture.pcapng (as `capture = true` in the file).
    #[arg(long)]
    capture: bool,
    /// With --capture: the cap on each repetition's capture, bytes (overrides the file's
    /// `capture_max_bytes`).
    #[arg(long)]
    capture_max_bytes: Option<u64>,
}

impl ExperimentArgs {
    /// Reads the experiment, with --reps and --capture applied.
    fn load(&self) -> Result<ringlab_bench::experiment::Experiment> {
        let mut exp = ringlab_bench::experiment::Experiment::load(&self.experiment)?;
        if let Some(r) = self.reps {
            exp.reps = r;
        }
        exp.capture |= self.capture;
        if let Some(m) = self.capture_max_bytes {
            exp.capture_max_bytes = m;
        }
        Ok(exp)
    }

    /// How to run one configuration into `out` (root, the scripts and the checks are
    /// `runner::run`'s).
    fn opts(&self, out: PathBuf, label: &str) -> Result<ringlab_bench::runner::RunOpts> {
        Ok(ringlab_bench::runner::RunOpts {
            binary: node_binary()?,
            out,
            command: std::env::args().collect::<Vec<_>>().join(" "),
            label: label.into(),
            hosts: self
                .hosts
                .as_deref()
                .map(ringlab_bench::hosts::inventory::Inventory::load)
                .transpose()?,
            dry_run: self.dry_run,
        })
    }

    /// Takes this run's prefix (given or fresh), before anything is made; a held one is
    /// refused at once.
    fn lock(&self) -> Result<ringlab_bench::prefix::PrefixLock> {
        use ringlab_bench::prefix::PrefixLock;
        let lock = if self.hosts.is_some() && !ringlab_bench::runner::is_root() {
            // The ssh backend makes nothing on this machine but its results and a private
            // directory of ssh control sockets: no root, and the lock in the user's own
            // runtime directory.
            let dir = std::env::var_os("XDG_RUNTIME_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(std::env::temp_dir);
            let p = self
                .prefix
                .clone()
                .unwrap_or_else(|| ringlab_bench::prefix::default_candidate(std::process::id(), 0));
            PrefixLock::acquire_in(&dir, &p)?
        } else {
            if self.hosts.is_none() {
                ringlab_bench::runner::require_root()?;
            }
            match &self.prefix {
                Some(p) => PrefixLock::acquire(p)?,
                None => PrefixLock::acquire_default()?,
            }
        };
        eprintln!(
            "ringlab: prefix {} (lock {})",
            lock.prefix(),
            lock.path().display()
        );
        Ok(lock)
    }
}

#[derive(clap::Args)]
struct SimArgs {
    /// Nodes per cluster (1 to 32).
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Number of seeds to run (seed, seed+1, ...).
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// First seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Probability that a packet copy is lost (fault phase): the mean loss, uniform or in
    /// bursts.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Mean length of a burst of losses, in copies, per directed link (Gilbert–Elliott);
    /// 0 or 1: uniform loss.
    #[arg(long, default_value_t = 0.0)]
    loss_burst: f64,
    /// Probability that a packet copy is duplicated (fault phase).
    #[arg(long, default_value_t = 0.0)]
    dup: f64,
    /// Probability that a packet copy is held back and overtaken (fault phase).
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Faults: comma list of partition, merge, crash, restart, pause, hostile (a node on the
    /// segment that replays, alters and forges datagrams), oneway (one node stops hearing
    /// another), partial (two nodes stop hearing each other, both still reach the rest), or
    /// all (every fault but hostile, oneway and partial), none.
    #[arg(long, default_value = "none")]
    faults: String,
    /// Virtual duration of each run, ms.
    #[arg(long, default_value_t = 20_000)]
    duration_ms: u64,
    /// Ring variant.
    #[arg(long, value_enum, default_value = "classic")]
    variant: VariantArg,
    /// One-way link delay, µs.
    #[arg(long, default_value_t = 50)]
    delay_us: u64,
    /// Link jitter, µs.
    #[arg(long, default_value_t = 20)]
    jitter_us: u64,
    /// Mean interval between messages per node, ms (0: no load).
    #[arg(long, default_value_t = 20)]
    load_interval_ms: u64,
    /// Ring config (TOML with corosync knob names); flags above override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Token timeout, ms (overrides the config).
    #[arg(long)]
    token: Option<u64>,
    /// Writes every node's records, one file per node and incarnation per seed.
    #[arg(long)]
    events_dir: Option<PathBuf>,
    /// Prints one JSON object instead of the human summary.
    #[arg(long)]
    json: bool,
    /// Services riding on the ring, a comma list of the registry's names (checkpoint, ...):
    /// runs the sync engine with them and their random workloads on every node instead of
    /// plain messages.
    #[arg(long)]
    services: Option<String>,
    /// With --services: about how many bytes of state each service's workload keeps (the
    /// checkpoint service: sections of about N/128 bytes).
    #[arg(long, default_value_t = 65_536)]
    state_bytes: usize,
    /// With --services store: keys written through the ring once it forms, before the
    /// faults (so that a full copy moves a store of that size).
    #[arg(long, default_value_t = 0)]
    store_keys: u64,
    /// With --store-keys: bytes of each value.
    #[arg(long, default_value_t = 1024)]
    store_bytes: usize,
    /// With --services: each service's own configuration, a TOML file of one table per
    /// service (`[resources]` with `policy`, `auto_failback`, `resources = [{ name = "web",
    /// home = 2 }]`, ...); a service without a table gets its defaults.
    #[arg(long)]
    service_config: Option<PathBuf>,
    /// With --services: each action a service asks for (a resource's start or stop command)
    /// takes a time drawn from 0 to N ms; past its timeout it fails, as a killed command.
    #[arg(long, default_value_t = 0)]
    action_ms: u64,
    /// With --services: the share of start actions that fail (exit status 1), 0 to 1.
    #[arg(long, default_value_t = 0.0)]
    start_fail_rate: f64,
    /// Authenticate every datagram with a cluster key, as real nodes with `key_file` do.
    #[arg(long)]
    key: bool,
    /// With --services: each slice of a service's long local work (kml's merge, in slices
    /// of its reint_slice records) takes N ns of virtual time, during which the node's ring
    /// runs on and its services' inputs wait in a backlog; 0: done at once.
    #[arg(long, default_value_t = 0)]
    work_slice_ns: u64,
    /// Writes each seed's frames as pcapng (synthetic Ethernet/IPv4/UDP headers, one
    /// interface per directed link, the virtual clock): to this file with one seed, else
    /// to DIR/seed-N.pcapng (open them with dissector/ringlab.lua).
    #[arg(long, value_name = "DIR_OR_FILE")]
    capture: Option<PathBuf>,
    /// With --capture: the cap on each seed's capture, bytes (said in the file and on
    /// stderr when reached).
    #[arg(long, default_value_t = ringlab_sim::capture::DEFAULT_MAX_BYTES)]
    capture_max_bytes: u64,
}

#[derive(clap::Args)]
struct ClusterArgs {
    /// Nodes (1 to 32).
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// Transport.
    #[arg(long, value_enum, default_value = "unicast")]
    transport: TransportArg,
    /// Ring variant.
    #[arg(long, value_enum, default_value = "classic")]
    variant: VariantArg,
    /// Message size, bytes.
    #[arg(long, default_value_t = 1024)]
    size: usize,
    /// Nodes that send (the first N).
    #[arg(long)]
    senders: Option<usize>,
    /// Messages per second per sender (0: as fast as the ring takes them).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Safe delivery instead of agreed.
    #[arg(long)]
    safe: bool,
    /// Load duration, ms.
    #[arg(long, default_value_t = 3000)]
    load_ms: u64,
    /// UDP port.
    #[arg(long, default_value_t = 5405)]
    port: u16,
    /// Authenticate every datagram with a shared key.
    #[arg(long)]
    key: bool,
    /// Measure raw UDP (ringlab blast) first, in the same run, and print the ratio.
    #[arg(long)]
    baseline: bool,
    /// Token timeout, ms.
    #[arg(long)]
    token: Option<u64>,
    /// Keep configs, records and logs in this directory.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Prints one JSON object.
    #[arg(long)]
    json: bool,
    /// One system call per datagram instead of recvmmsg/sendmmsg (for comparison).
    #[arg(long)]
    unbatched: bool,
    /// Captures the ring's datagrams on loopback (UDP to or from --port; AF_PACKET, so
    /// root or CAP_NET_RAW) into this pcapng file, the node records' faults as comments.
    #[arg(long, value_name = "FILE")]
    capture: Option<PathBuf>,
    /// With --capture: the cap on the capture, bytes.
    #[arg(long, default_value_t = ringlab_sim::capture::DEFAULT_MAX_BYTES)]
    capture_max_bytes: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TransportArg {
    Unicast,
    Multicast,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum VariantArg {
    Classic,
    Accelerated,
}

fn main() {
    // Warnings show unless RUST_LOG says otherwise: a node's write failures and running
    // without a key must not go unsaid.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::builder()
                .with_default_directive(tracing_subscriber::filter::LevelFilter::WARN.into())
                .from_env_lossy(),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let code = match cli.cmd {
        Cmd::Sim(a) => sim(a),
        Cmd::Dissector { install, print } => dissector::command(install, print),
        Cmd::Capture {
            ifaces,
            out,
            max_bytes,
            max_seconds,
        } => capture(&ifaces, &out, max_bytes, max_seconds),
        Cmd::Check { paths, json } => check_files(&paths, json),
        Cmd::Run(a) => experiment_run(&a),
        Cmd::Sweep {
            params,
            interleave,
            exp,
        } => sweep(&exp, &params, interleave),
        Cmd::Lab {
            experiment,
            prefix,
            dir,
            max_minutes,
        } => lab(&experiment, prefix.as_deref(), dir, max_minutes),
        Cmd::Compare { dirs, out } => {
            ringlab_bench::compare::compare(&dirs, out.as_deref()).map(|t| {
                println!("{t}");
                if let Some(o) = out {
                    println!("wrote {}", o.join("compare.md").display());
                }
                0
            })
        }
        Cmd::Report { dirs, out } => ringlab_bench::report::write(&dirs, &out).map(|p| {
            println!("wrote {}", p.display());
            0
        }),
        Cmd::Clock { serve, until } => {
            if let Some(t) = until {
                println!("{}", ringlab_bench::hosts::clock::sleep_until(t));
            } else if serve {
                let stdin = std::io::stdin();
                // The channel closing (the controller done or gone) ends it either way.
                let _ = ringlab_bench::hosts::clock::serve(stdin.lock(), std::io::stdout().lock());
            } else {
                println!("{}", ringlab_net::monotonic_ns());
            }
            Ok(0)
        }
        Cmd::Relay {
            a,
            b,
            delay_ms,
            jitter_ms,
            loss_pct,
            loss_burst,
            loss_to_a_only,
            duplicate_pct,
            reorder_pct,
            reorder_gap_ms,
            seed,
            max_seconds,
        } => relay(
            &a,
            &b,
            ringlab_net::relay::Impairment {
                delay_ms,
                jitter_ms,
                loss_pct,
                loss_burst,
                loss_to_a_only,
                duplicate_pct,
                reorder_pct,
                reorder_gap_ms,
            },
            seed,
            max_seconds,
        ),
        Cmd::Node { config } => node(&config),
        Cmd::CorosyncNode { config } => corosync_node(&config),
        Cmd::KmlDigest { dir } => ringlab_net::mirror::dir_digest(&dir)
            .with_context(|| format!("reading {}", dir.display()))
            .map(|d| {
                println!("{}", ringlab_net::mirror::hex(&d));
                0
            }),
        Cmd::Ctl {
            socket,
            cmd,
            args,
            json,
        } => ctl(&socket, &cmd, &args, json),
        Cmd::Cluster(a) => cluster(a),
        Cmd::Flow {
            end,
            bind,
            group,
            to,
            iface,
            size,
            seconds,
        } => flow(end, bind, group, &to, iface, size, seconds),
        Cmd::Blast {
            receivers,
            size,
            seconds,
            port,
            transport,
        } => blast::blast(
            receivers,
            size,
            seconds,
            port,
            matches!(transport, TransportArg::Multicast),
        )
        .map_err(anyhow::Error::from)
        .and_then(|b| {
            println!("{}", serde_json::to_string(&b)?);
            Ok(0)
        }),
    };
    match code {
        Ok(c) => std::process::exit(c),
        // An error after Ctrl-C or SIGTERM is the interruption's, not a bad configuration's.
        Err(e) if INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) => {
            eprintln!("ringlab: interrupted: {e:#}");
            std::process::exit(130);
        }
        Err(e) => {
            eprintln!("ringlab: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Set by the signal handlers of run, sweep and cluster: the process was asked to stop.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// One end of a flow.
#[derive(Clone, Copy, clap::ValueEnum)]
enum FlowEnd {
    Recv,
    Send,
}

fn flow(
    end: FlowEnd,
    bind: Option<std::net::SocketAddr>,
    group: Option<std::net::Ipv4Addr>,
    to: &[std::net::SocketAddr],
    iface: Option<std::net::Ipv4Addr>,
    size: usize,
    seconds: f64,
) -> Result<i32> {
    if !(0.0..=60.0).contains(&seconds) || !(1..=65_000).contains(&size) {
        bail!("--seconds must be 0-60 and --size 1-65000");
    }
    let out = match end {
        FlowEnd::Recv => serde_json::to_string(&ringlab_bench::raw::flow_recv(
            bind.context("flow recv needs --bind ADDR:PORT")?,
            group,
            seconds,
        )?)?,
        FlowEnd::Send => {
            if to.is_empty() {
                bail!("flow send needs --to ADDR:PORT (one or more)");
            }
            serde_json::to_string(&ringlab_bench::raw::flow_send(to, iface, size, seconds)?)?
        }
    };
    println!("{out}");
    Ok(0)
}

/// Runs `ringlab capture`: frames into `out` until SIGTERM, then one JSON report line.
fn capture(ifaces: &[String], out: &Path, max_bytes: u64, max_seconds: u64) -> Result<i32> {
    let stats = ringlab_net::capture::run(
        ifaces,
        out,
        max_bytes,
        std::time::Duration::from_secs(max_seconds),
        None,
        stop_flag()?,
    )?;
    let report = ringlab_bench::capture::CaptureReport {
        frames: stats.frames,
        bytes: stats.bytes,
        left_out: stats.left_out,
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(0)
}

fn stop_flag() -> Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s = stop.clone();
    ctrlc::set_handler(move || {
        eprintln!("ringlab: stopping; tearing down");
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        s.store(true, std::sync::atomic::Ordering::Relaxed)
    })
    .context("installing the signal handler")?;
    Ok(stop)
}

/// The binary the nodes run: this one. A rebuild while a run goes on replaces the file;
/// Linux then reports the old path with " (deleted)", and the new build at that path is used.
fn node_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the ringlab binary")?;
    let s = exe.to_string_lossy();
    Ok(match s.strip_suffix(" (deleted)") {
        Some(p) => PathBuf::from(p),
        None => exe,
    })
}

fn timestamp() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace([':', '-'], "")
}

/// Makes a new results directory `<parent>/<timestamp>` (`-2`, `-3`... when a run started in
/// the same second has it), so that two runs never share one.
fn new_results_dir(parent: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let stamp = timestamp();
    for n in 1.. {
        let dir = match n {
            1 => parent.join(&stamp),
            n => parent.join(format!("{stamp}-{n}")),
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", dir.display())),
        }
    }
    unreachable!("some suffix is free")
}

/// Returns 1 (and says why) when a run broke a guarantee or missed a recovery bound; 130
/// when a signal stopped it, 2 when an error did.
fn judge(s: &ringlab_bench::summary::Summary, dir: &Path) -> i32 {
    use ringlab_bench::summary::StopCause;
    let mut code = 0;
    // A sweep's configuration is named by its label, and the message says it is a sweep's.
    let who = if s.label.is_empty() {
        format!("ringlab run: {}", s.experiment.name)
    } else {
        format!("ringlab sweep: {} {}", s.experiment.name, s.label)
    };
    if s.violations > 0 {
        eprintln!(
            "{who}: {} CHECKER VIOLATIONS (records kept in {})",
            s.violations,
            dir.join("records").display()
        );
        code = 1;
    }
    for f in &s.faults {
        if f.out_of_bound > 0 {
            eprintln!(
                "{who}: fault {} ({}) did not settle within {:.0} ms in {} of {} repetitions",
                f.index,
                f.action,
                s.bound_ms,
                f.out_of_bound,
                s.reps.len()
            );
            code = 1;
        }
    }
    if let Some(c) = s.store.as_ref().filter(|c| c.digests_unequal > 0) {
        eprintln!(
            "{who}: the live nodes ended with different store digests in {} of {} repetitions",
            c.digests_unequal,
            s.reps.len()
        );
        code = 1;
    }
    if let Some(k) = s.kml.as_ref().filter(|k| k.unequal > 0) {
        eprintln!(
            "{who}: kml: a real directory differed from its tree, or the trees from \
             each other, in {} of {} repetitions (reps[].kml in summary.json)",
            k.unequal, k.checked
        );
        code = 1;
    }
    if let Some(st) = &s.stopped {
        eprintln!(
            "{who}: {}; summary.json says so, with the completed repetitions",
            st.describe()
        );
        code = match st.cause {
            StopCause::Signal => 130,
            StopCause::Error | StopCause::Unfinished => 2,
        };
    }
    code
}

/// Says loudly, before and after, that a run goes without a key.
fn warn_no_key(exp: &ringlab_bench::experiment::Experiment) {
    if !exp.key {
        eprintln!("\nringlab run: {}\n", ringlab_bench::runner::NO_KEY_WARNING);
    }
}

fn experiment_run(a: &ExperimentArgs) -> Result<i32> {
    let exp = a.load()?;
    let stop = stop_flag()?;
    let lock = a.lock()?;
    if a.dry_run {
        // Nothing runs, so there is nothing to keep: the results go to a directory removed
        // afterwards.
        let dir = std::env::temp_dir().join(format!("ringlab-dry-run-{}", lock.prefix()));
        let opts = a.opts(dir.clone(), "")?;
        let r = ringlab_bench::runner::run(&exp, &opts, &lock, &stop);
        let _ = std::fs::remove_dir_all(&dir);
        r?;
        println!("dry run: the commands above were printed, none was run; no results written");
        return Ok(0);
    }
    let dir = new_results_dir(&a.out.join(&exp.name))?;
    let opts = a.opts(dir.clone(), "")?;
    warn_no_key(&exp);
    let s = ringlab_bench::runner::run(&exp, &opts, &lock, &stop)?;
    drop(lock);
    println!(
        "{}",
        ringlab_bench::compare::tables(&[(dir.clone(), s.clone())])
    );
    warn_no_key(&exp);
    println!(
        "results in {} (a page to open: {})",
        dir.display(),
        dir.join("report.html").display()
    );
    Ok(judge(&s, &dir))
}

fn lab(
    experiment: &Path,
    prefix: Option<&str>,
    dir: Option<PathBuf>,
    max_minutes: u64,
) -> Result<i32> {
    use ringlab_bench::prefix::PrefixLock;
    let exp = ringlab_bench::experiment::Experiment::load(experiment)?;
    ringlab_bench::runner::require_root()?;
    let stop = stop_flag()?;
    let lock = match prefix {
        Some(p) => PrefixLock::acquire(p)?,
        None => PrefixLock::acquire_default()?,
    };
    let dir =
        dir.unwrap_or_else(|| std::env::temp_dir().join(format!("ringlab-lab-{}", lock.prefix())));
    let opts = ringlab_bench::lab::LabOpts {
        binary: node_binary()?,
        dir,
        max_minutes,
    };
    ringlab_bench::lab::run(&exp, &opts, &lock, &stop)?;
    Ok(0)
}

fn sweep(a: &ExperimentArgs, params: &[String], interleave: bool) -> Result<i32> {
    let base = a.load()?;
    // Every configuration is checked before anything runs.
    let configs = ringlab_bench::sweep::configurations(&base, params)?;
    // One prefix for the whole sweep, held from the first configuration to the last.
    let stop = stop_flag()?;
    let lock = a.lock()?;
    let dir = new_results_dir(&a.out.join(format!("{}-sweep", base.name)))?;
    warn_no_key(&base);
    let interleave = interleave
        || params.iter().any(|p| {
            p.split_once('=')
                .is_some_and(|(k, _)| k == "implementation")
        });
    let mut code = 0;
    if interleave {
        code = sweep_interleaved(a, &configs, &dir, &lock, &stop)?;
    }
    for (i, c) in configs.iter().enumerate().filter(|_| !interleave) {
        eprintln!("sweep {}/{}: {}", i + 1, configs.len(), c.label);
        let opts = a.opts(dir.join(&c.label), &c.label)?;
        let s = ringlab_bench::runner::run(&c.experiment, &opts, &lock, &stop)?;
        code = code.max(judge(&s, &opts.out));
        if s.stopped.is_some() {
            if i + 1 < configs.len() {
                eprintln!(
                    "ringlab sweep: stopped at configuration {} of {}; the rest were not run",
                    i + 1,
                    configs.len()
                );
            }
            break;
        }
    }
    drop(lock);
    let t = ringlab_bench::compare::compare(std::slice::from_ref(&dir), Some(&dir))?;
    ringlab_bench::report::write_beside(&dir);
    println!("{t}");
    warn_no_key(&base);
    println!(
        "results in {} (a page to open: {})",
        dir.display(),
        dir.join("report.html").display()
    );
    Ok(code)
}

/// Runs the configurations of a sweep repetition by repetition: rep 1 of each, then rep 2
/// of each ... A configuration whose repetition fails stops there (its summary says why);
/// the others go on. A signal stops them all.
fn sweep_interleaved(
    a: &ExperimentArgs,
    configs: &[ringlab_bench::sweep::Configuration],
    dir: &Path,
    lock: &ringlab_bench::prefix::PrefixLock,
    stop: &std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<i32> {
    use ringlab_bench::summary::{StopCause, Stopped};
    use std::sync::atomic::Ordering;
    let opts = configs
        .iter()
        .map(|c| a.opts(dir.join(&c.label), &c.label))
        .collect::<Result<Vec<_>>>()?;
    let mut runs = configs
        .iter()
        .zip(&opts)
        .map(|(c, o)| ringlab_bench::runner::Run::new(&c.experiment, o, lock))
        .collect::<Result<Vec<_>>>()?;
    let reps_of = |i: usize| configs[i].experiment.reps;
    let most = (0..configs.len()).map(reps_of).max().unwrap_or(0);
    let mut done: Vec<Vec<ringlab_bench::summary::RepSummary>> = vec![vec![]; configs.len()];
    let mut stopped: Vec<Option<Stopped>> = vec![None; configs.len()];
    let total: u64 = configs
        .iter()
        .map(|c| c.experiment.reps as u64 * c.experiment.duration_ms)
        .sum();
    let pb = runs[0].progress(total);
    for rep in 1..=most {
        for (i, c) in configs.iter().enumerate() {
            if rep > reps_of(i) || stopped[i].is_some() {
                continue;
            }
            let stopped_as = |cause, reason: String, abandoned| Stopped {
                cause,
                reason,
                completed_reps: rep - 1,
                planned_reps: reps_of(i),
                abandoned_rep: abandoned,
            };
            if stop.load(Ordering::Relaxed) {
                stopped[i] = Some(stopped_as(
                    StopCause::Signal,
                    ringlab_bench::runner::SIGNAL_REASON.into(),
                    None,
                ));
                continue;
            }
            pb.suspend(|| eprintln!("sweep rep {rep}/{most}: {}", c.label));
            match runs[i].rep(lock, rep, stop, &pb) {
                Ok(s) => done[i].push(s),
                Err(_) if stop.load(Ordering::Relaxed) => {
                    stopped[i] = Some(stopped_as(
                        StopCause::Signal,
                        ringlab_bench::runner::SIGNAL_REASON.into(),
                        Some(rep),
                    ))
                }
                Err(e) => {
                    pb.suspend(|| eprintln!("ringlab sweep: {}: rep {rep}: {e:#}", c.label));
                    stopped[i] = Some(stopped_as(StopCause::Error, format!("{e:#}"), Some(rep)))
                }
            }
        }
    }
    pb.finish_and_clear();
    let mut code = 0;
    for ((r, reps), (st, o)) in runs
        .into_iter()
        .zip(done)
        .zip(stopped.into_iter().zip(&opts))
    {
        let s = r.finish(reps, st)?;
        code = code.max(judge(&s, &o.out));
    }
    Ok(code)
}

fn relay(
    a: &str,
    b: &str,
    imp: ringlab_net::relay::Impairment,
    seed: u64,
    max_seconds: u64,
) -> Result<i32> {
    use std::sync::atomic::Ordering;
    let stop = stop_flag()?;
    let stats = ringlab_net::relay::run(
        a,
        b,
        imp,
        seed,
        std::time::Duration::from_secs(max_seconds),
        stop,
    )?;
    for (dir, st) in ["a->b", "b->a"].iter().zip(stats.iter()) {
        let g = |x: &std::sync::atomic::AtomicU64| x.load(Ordering::Relaxed);
        println!(
            "{dir}: received {} sent {} dropped {} bursts {} duplicated {} reordered {}",
            g(&st.received),
            g(&st.sent),
            g(&st.dropped),
            g(&st.bursts),
            g(&st.duplicated),
            g(&st.reordered)
        );
    }
    Ok(0)
}

fn node(config: &Path) -> Result<i32> {
    let cfg = match ringlab_net::NodeConfig::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringlab node: {e}");
            return Ok(2);
        }
    };
    let node = ringlab_net::Node::start(cfg).context("starting the node")?;
    let why = node.run()?;
    tracing::info!(why, "node stopped");
    Ok(0)
}

fn corosync_node(config: &Path) -> Result<i32> {
    let cfg = match ringlab_net::NodeConfig::load(config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringlab corosync-node: {e}");
            return Ok(2);
        }
    };
    let opts = ringlab_corosync::Options::default();
    let node =
        ringlab_corosync::CorosyncNode::start(cfg, &opts).context("starting the corosync node")?;
    let why = node.run()?;
    tracing::info!(why, "corosync node stopped");
    Ok(0)
}

fn ctl(socket: &Path, cmd: &str, args: &[String], json: bool) -> Result<i32> {
    // A raw JSON object goes as it is (the escape hatch); a command and its key=value
    // arguments become a typed request, a bad one refused before anything is sent.
    let line = if cmd.trim_start().starts_with('{') {
        cmd.to_string()
    } else {
        ringlab_net::control::args::parse(cmd, args)?.to_line()
    };
    let v = ringlab_net::control::exchange(socket, &line)?;
    let status = (cmd == "status" && !json)
        .then(|| serde_json::from_value::<ringlab_net::control::StatusReply>(v.clone()).ok())
        .flatten();
    match status {
        Some(st) => print!("{}", status_table(&st)),
        None => println!("{}", serde_json::to_string_pretty(&v)?),
    }
    Ok(if v["ok"] == true { 0 } else { 1 })
}

/// Renders a node's status for a person, as `corosync-cfgtool -s` and `corosync-quorumtool
/// -s` do theirs.
fn status_table(st: &ringlab_net::control::StatusReply) -> String {
    let members: Vec<String> = st.members.iter().map(|m| m.to_string()).collect();
    format!(
        "Node status\n\
         \x20 node id      {}\n\
         \x20 incarnation  {}\n\
         \x20 state        {:?}\n\
         \x20 ring         {} (representative {}, sequence {})\n\
         \x20 members      {} ({})\n\
         \x20 quorum       none configured: every ring orders messages; a quorum is the \
         application's to decide\n",
        st.node,
        st.inc,
        st.state,
        st.ring,
        st.ring.rep,
        st.ring.seq,
        members.len(),
        members.join(" "),
    )
}

fn cluster(a: ClusterArgs) -> Result<i32> {
    if !(1..=32).contains(&a.nodes) {
        bail!("--nodes must be between 1 and 32");
    }
    let mut totem = Config {
        variant: match a.variant {
            VariantArg::Classic => Variant::Classic,
            VariantArg::Accelerated => Variant::Accelerated,
        },
        ..Config::default()
    };
    if let Some(t) = a.token {
        totem.token = t;
    }
    totem.validate()?;
    let interrupted = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || {
        INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        flag.store(true, std::sync::atomic::Ordering::SeqCst)
    })
    .context("installing the Ctrl-C handler")?;
    cluster::run(
        cluster::Opts {
            nodes: a.nodes,
            transport: match a.transport {
                TransportArg::Unicast => ringlab_net::Transport::Unicast,
                TransportArg::Multicast => ringlab_net::Transport::Multicast,
            },
            totem,
            size: a.size,
            senders: a.senders.unwrap_or(a.nodes),
            rate: a.rate,
            safe: a.safe,
            load_ms: a.load_ms,
            port: a.port,
            key: a.key,
            baseline: a.baseline,
            keep: a.dir,
            capture: a.capture,
            capture_max_bytes: a.capture_max_bytes,
            json: a.json,
            unbatched: a.unbatched,
        },
        interrupted,
    )
}

fn sim(a: SimArgs) -> Result<i32> {
    if !(1..=32).contains(&a.nodes) {
        bail!("--nodes must be between 1 and 32");
    }
    for (name, p) in [
        ("--loss", a.loss),
        ("--dup", a.dup),
        ("--reorder", a.reorder),
        ("--start-fail-rate", a.start_fail_rate),
    ] {
        if !(0.0..=1.0).contains(&p) {
            bail!("{name} must be a probability between 0 and 1");
        }
    }
    if !(a.loss_burst == 0.0 || (1.0..=1e6).contains(&a.loss_burst)) {
        bail!("--loss-burst must be 0 (uniform loss) or a mean burst length of at least 1");
    }
    if a.action_ms > 60_000 {
        bail!("--action-ms must be at most 60000");
    }
    let faults = Faults::parse(&a.faults).map_err(anyhow::Error::msg)?;
    let mut ring: Config = match &a.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            toml::from_str(&text).with_context(|| format!("parsing {}", p.display()))?
        }
        None => Config::default(),
    };
    ring.variant = match a.variant {
        VariantArg::Classic => Variant::Classic,
        VariantArg::Accelerated => Variant::Accelerated,
    };
    if let Some(t) = a.token {
        ring.token = t;
    }
    ring.validate()?;
    let services = ringlab_sync::registry::parse_list(a.services.as_deref().unwrap_or(""))?;
    let service_config: std::collections::BTreeMap<String, serde_json::Value> =
        match &a.service_config {
            None => Default::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("reading --service-config {}", p.display()))?;
                let t: std::collections::BTreeMap<String, toml::Value> = toml::from_str(&text)
                    .with_context(|| format!("parsing --service-config {}", p.display()))?;
                t.into_iter()
                    .map(|(k, v)| Ok((k, serde_json::to_value(v)?)))
                    .collect::<anyhow::Result<_>>()?
            }
        };
    let ids: Vec<ringlab_ring::NodeId> = (1..=a.nodes as ringlab_ring::NodeId).collect();
    ringlab_sync::ServiceApp::with_config(1, &services, &ids, &service_config)?;
    let base = RunConfig {
        nodes: a.nodes,
        seed: a.seed,
        duration_ms: a.duration_ms,
        net: NetConfig {
            delay_ns: a.delay_us * 1000,
            jitter_ns: a.jitter_us * 1000,
            loss: a.loss,
            loss_burst: a.loss_burst,
            dup: a.dup,
            reorder: a.reorder,
            ..NetConfig::default()
        },
        faults,
        ring,
        load_interval_ms: a.load_interval_ms,
        record_messages: true,
        services,
        workload: ringlab_sync::Workload {
            state_bytes: a.state_bytes,
        },
        key: a.key,
        service_config,
        action_ms: a.action_ms,
        start_fail_rate: a.start_fail_rate,
        store_keys: a.store_keys,
        store_bytes: a.store_bytes,
        work_slice_ns: a.work_slice_ns,
        capture_max_bytes: a.capture.as_ref().map(|_| a.capture_max_bytes),
    };
    let seeds: Vec<u64> = (a.seed..a.seed + a.seeds).collect();
    // On a terminal, a bar of seeds done (indicatif hides it when stderr is not one).
    let pb = indicatif::ProgressBar::new(seeds.len() as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} seeds, {elapsed} ({eta} left)",
        )
        .expect("a valid template"),
    );
    let capture_to = a
        .capture
        .as_deref()
        .map(|p| sim_capture::Target::new(p, a.seeds));
    let reports: Vec<RunReport> = seeds
        .par_iter()
        .map(|&seed| {
            let _done = IncOnDrop(&pb);
            let mut r = run(&RunConfig {
                seed,
                ..base.clone()
            });
            if let Some(dir) = &a.events_dir {
                if let Err(e) =
                    ringlab_records::write_run(&dir.join(format!("seed-{seed}")), &r.records)
                {
                    eprintln!("ringlab: writing records of seed {seed}: {e:#}");
                }
            }
            if let (Some(target), Some(c)) = (&capture_to, r.capture.take()) {
                if let Err(e) = target.write(seed, &c, &r.records) {
                    eprintln!("ringlab: writing the capture of seed {seed}: {e:#}");
                }
            }
            r.records = Vec::new();
            r
        })
        .collect();
    pb.finish_and_clear();
    let s = SimSummary::of(&reports);
    if a.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        print!("{}", s.render(&base, &a.faults));
    }
    if !s.failing_seeds.is_empty() {
        match &a.events_dir {
            Some(dir) => {
                let at: Vec<String> = s
                    .failing_seeds
                    .iter()
                    .map(|k| dir.join(format!("seed-{k}")).display().to_string())
                    .collect();
                eprintln!(
                    "ringlab sim: the records of the failing seeds are in {}; check one again with `ringlab check DIR`",
                    at.join(", ")
                );
            }
            None => eprintln!(
                "ringlab sim: no records were written; to write those of a failing seed, run it again with --seed N --seeds 1 --events-dir DIR (same flags)"
            ),
        }
    }
    Ok(if s.violations == 0 { 0 } else { 1 })
}

/// Advances a progress bar when dropped: a seed counts as done however its run ends.
struct IncOnDrop<'a>(&'a indicatif::ProgressBar);

impl Drop for IncOnDrop<'_> {
    fn drop(&mut self) {
        self.0.inc(1);
    }
}

fn check_files(paths: &[PathBuf], json: bool) -> Result<i32> {
    let runs = ringlab_records::find_runs(paths)?;
    let mut total = CheckTotals::default();
    let mut out_runs = Vec::new();
    let mut empty = Vec::new();
    let mut all_violations: Vec<serde_json::Value> = Vec::new();
    for run in &runs {
        let set = ringlab_records::read_paths(&run.files)?;
        for f in &set.torn {
            eprintln!(
                "ringlab check: {}: a torn last line (its writer was killed mid-write) is read as the end",
                f.display()
            );
        }
        let dir = run.dir.display().to_string();
        if set.records.is_empty() {
            eprintln!(
                "ringlab check: {dir}: a run directory with no event records ({} record files)",
                run.files.len()
            );
            empty.push(dir);
            continue;
        }
        // Each run on its own, as the runner and the simulator judge them: records of
        // different runs share node ids, ring ids and message ids.
        let report = check(&set.records, None);
        total.runs += 1;
        total.records += set.records.len();
        total.files += set.files.len();
        total.deliveries += report.deliveries;
        total.regular_installs += report.regular_installs;
        total.max_recovery_ns = total.max_recovery_ns.max(report.max_recovery_ns);
        total.violations += report.violations.len();
        total.failing_runs += usize::from(!report.violations.is_empty());
        if json {
            for v in &report.violations {
                all_violations.push(serde_json::json!({ "dir": dir, "violation": v }));
            }
            out_runs.push(serde_json::json!({
                "dir": dir,
                "files": set.files.len(),
                "records": set.records.len(),
                "deliveries": report.deliveries,
                "regular_installs": report.regular_installs,
                "max_recovery_ms": report.max_recovery_ns as f64 / 1e6,
                "violations": report.violations,
            }));
        } else {
            println!(
                "{dir}: {} records from {} files: {} deliveries, {} regular configurations, {} violations",
                set.records.len(),
                set.files.len(),
                report.deliveries,
                report.regular_installs,
                report.violations.len()
            );
            for v in &report.violations {
                println!("  {v}");
            }
        }
    }
    if total.runs == 0 {
        let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "no event records in {} (record files are *.jsonl, searched in every folder below)",
            names.join(", ")
        );
    }
    if json {
        println!(
            "{}",
            serde_json::json!({
                "runs": out_runs,
                "empty_runs": empty,
                "records": total.records,
                "deliveries": total.deliveries,
                "regular_installs": total.regular_installs,
                "max_recovery_ms": total.max_recovery_ns as f64 / 1e6,
                "violations": all_violations,
            })
        );
    } else {
        println!(
            "total: {} runs, {} records from {} files: {} deliveries, {} regular configurations, {} violations in {} of {} runs{}",
            total.runs,
            total.records,
            total.files,
            total.deliveries,
            total.regular_installs,
            total.violations,
            total.failing_runs,
            total.runs,
            if empty.is_empty() {
                String::new()
            } else {
                format!("; {} run directories without records", empty.len())
            }
        );
    }
    if !empty.is_empty() {
        eprintln!(
            "ringlab check: {} run directories hold no event records: {}",
            empty.len(),
            empty.join(", ")
        );
    }
    // A broken guarantee is the verdict that matters most: 1 wins over 2 (records missing).
    Ok(if total.violations > 0 {
        1
    } else if !empty.is_empty() {
        2
    } else {
        0
    })
}

/// What `ringlab check` adds up over its runs.
#[derive(Default)]
struct CheckTotals {
    runs: usize,
    records: usize,
    files: usize,
    deliveries: u64,
    regular_installs: u64,
    max_recovery_ns: u64,
    violations: usize,
    failing_runs: usize,
}
