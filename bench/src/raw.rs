//! Raw UDP across the run's own bridge: the baseline ring throughput is compared with.
//!
//! [`fanout`] measures what one namespace can hand to every other namespace with no ring at
//! all: one sender (node 1's namespace) sends datagrams of the ring's message size as fast
//! as it can for a bounded time, either one copy per receiver with `sendmmsg` (what the
//! unicast transport does) or one datagram to a multicast group (TTL 1) joined by every
//! receiver; every other namespace runs one receiver (`recvmmsg`), which counts what
//! arrives. Sender and receivers are `ringlab flow` processes started in their namespaces
//! (`ip netns exec`), so they cross the same veths and bridge as the ring's nodes. The
//! result is per receiver: datagrams/s over the sender's sending time, the loss against what
//! the sender handed the kernel for it, and the CPU time (getrusage) of sender and
//! receivers per datagram.
//!
//! [`flow_send`] and [`flow_recv`] are the two ends (`ringlab flow send|recv`); the store
//! experiments' single-flow baseline ([`crate::store::raw_flow`]) is a fan-out to one receiver.

use anyhow::{bail, Context, Result};
use ringlab_net::harness::Cluster;
use ringlab_net::monotonic_ns;
use ringlab_ring::NodeId;
use serde::{Deserialize, Serialize};
use std::io::{BufRead as _, BufReader, Read as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The most datagrams one raw sender sends (a bound besides its time).
pub const FLOW_MAX_DATAGRAMS: u64 = 20_000_000;

/// The fan-outs' port on the receivers (the ring uses 5405).
pub const FANOUT_PORT: u16 = 7406;

/// The fan-out's multicast group (the ring's is 239.77.0.1).
pub const FANOUT_GROUP: Ipv4Addr = Ipv4Addr::new(239, 77, 0, 2);

/// The largest datagram a fan-out sends (`ringlab flow`'s bound, under UDP's 65,507 over
/// IPv4): larger messages are set against datagrams of this size, by bytes.
pub const MAX_DATAGRAM: usize = 65_000;

/// The most seconds a fan-out sends.
pub const MAX_SECONDS: f64 = 10.0;

/// Datagrams one `sendmmsg`/`recvmmsg` call handles at most.
const BATCH: usize = 64;

/// What a raw sender did (`ringlab flow send` prints it as JSON).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FlowSent {
    /// Datagrams handed to the kernel, all destinations together.
    pub datagrams: u64,
    /// Seconds it sent.
    pub seconds: f64,
    /// Its CPU time (user + system) over the whole process, s.
    #[serde(default)]
    pub cpu_s: f64,
    /// System calls that sent.
    #[serde(default)]
    pub calls: u64,
    /// Sends the kernel refused (each counted once, then retried by the loop).
    #[serde(default)]
    pub errors: u64,
}

/// What a raw receiver got (`ringlab flow recv` prints it as JSON).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct FlowReceived {
    /// Datagrams received.
    pub datagrams: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Its CPU time (user + system) over the whole process, s.
    #[serde(default)]
    pub cpu_s: f64,
}

/// This process's CPU time so far (user + system), s.
pub fn self_cpu_s() -> f64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
        t(u.user_time()) + t(u.system_time())
    })
}

fn ipv4(a: SocketAddr) -> Option<Ipv4Addr> {
    match a.ip() {
        IpAddr::V4(v) => Some(v),
        IpAddr::V6(_) => None,
    }
}

/// Sends datagrams of `size` bytes as fast as it can for `seconds` (and at most
/// [`FLOW_MAX_DATAGRAMS`]): to one address with `sendto` in a loop; to several with one
/// `sendmmsg` per copy to each (the unicast transport's way); to a multicast group (one
/// address) out of interface `iface`, TTL 1, loop off.
pub fn flow_send(
    to: &[SocketAddr],
    iface: Option<Ipv4Addr>,
    size: usize,
    seconds: f64,
) -> std::io::Result<FlowSent> {
    use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
    use std::os::fd::AsRawFd as _;
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, m.to_string());
    if to.is_empty() || to.iter().any(|a| ipv4(*a).is_none()) {
        return Err(bad("flow send: one or more IPv4 destinations"));
    }
    let multicast = to.iter().any(|a| a.ip().is_multicast());
    if multicast && to.len() != 1 {
        return Err(bad("flow send: a multicast group is the only destination"));
    }
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    s.set_send_buffer_size(4 << 20)?;
    if multicast {
        s.set_multicast_ttl_v4(1)?;
        s.set_multicast_loop_v4(false)?;
        if let Some(i) = iface {
            s.set_multicast_if_v4(&i)?;
        }
    }
    let sock = UdpSocket::from(s);
    let data = vec![0x5Au8; size];
    let start_cpu = self_cpu_s();
    let start = monotonic_ns();
    let end = start + (seconds * 1e9) as u64;
    let mut out = FlowSent::default();
    // One batch: BATCH / to.len() rounds of one copy to each destination.
    let rounds = (BATCH / to.len()).max(1);
    let addrs: Vec<Option<SockaddrStorage>> = (0..rounds)
        .flat_map(|_| to.iter().map(|a| Some(SockaddrStorage::from(*a))))
        .collect();
    let slices: Vec<[std::io::IoSlice<'_>; 1]> = addrs
        .iter()
        .map(|_| [std::io::IoSlice::new(&data)])
        .collect();
    let mut headers: MultiHeaders<SockaddrStorage> = MultiHeaders::preallocate(addrs.len(), None);
    while monotonic_ns() < end && out.datagrams < FLOW_MAX_DATAGRAMS {
        if to.len() == 1 {
            for _ in 0..32 {
                out.calls += 1;
                match sock.send_to(&data, to[0]) {
                    Ok(_) => out.datagrams += 1,
                    Err(_) => out.errors += 1,
                }
            }
            continue;
        }
        out.calls += 1;
        let cmsgs: [ControlMessage<'_>; 0] = [];
        match sendmmsg(
            sock.as_raw_fd(),
            &mut headers,
            &slices,
            &addrs,
            cmsgs,
            MsgFlags::empty(),
        ) {
            Ok(r) => out.datagrams += r.count() as u64,
            Err(_) => out.errors += 1,
        }
    }
    out.seconds = (monotonic_ns() - start) as f64 / 1e9;
    out.cpu_s = self_cpu_s() - start_cpu;
    Ok(out)
}

/// Receives on `bind` (with `group`: bound to the group and `bind`'s port, the group joined
/// on `bind`'s interface): prints `ready` once bound, then counts what arrives until
/// `seconds` have passed, or 300 ms after the last datagram once one came.
pub fn flow_recv(
    bind: SocketAddr,
    group: Option<Ipv4Addr>,
    seconds: f64,
) -> std::io::Result<FlowReceived> {
    use nix::sys::socket::{recvmmsg, MsgFlags, MultiHeaders, SockaddrStorage};
    use std::io::Write as _;
    use std::os::fd::AsRawFd as _;
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
    s.set_recv_buffer_size(4 << 20)?;
    match (group, ipv4(bind)) {
        (Some(g), Some(iface)) => {
            s.set_reuse_address(true)?;
            s.join_multicast_v4(&g, &iface)?;
            s.bind(&SocketAddr::new(IpAddr::V4(g), bind.port()).into())?;
        }
        (Some(_), None) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "flow recv: a multicast group needs an IPv4 --bind",
            ))
        }
        (None, _) => s.bind(&bind.into())?,
    }
    let sock = UdpSocket::from(s);
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    println!("ready");
    std::io::stdout().flush()?;
    let start_cpu = self_cpu_s();
    let end = monotonic_ns() + (seconds * 1e9) as u64;
    let mut got = FlowReceived::default();
    let mut last = 0u64;
    let mut bufs = vec![vec![0u8; 65_536]; BATCH];
    let mut headers: MultiHeaders<SockaddrStorage> = MultiHeaders::preallocate(BATCH, None);
    loop {
        let now = monotonic_ns();
        if now >= end || (got.datagrams > 0 && now >= last + 300 * 1_000_000) {
            got.cpu_s = self_cpu_s() - start_cpu;
            return Ok(got);
        }
        let mut iovs: Vec<[std::io::IoSliceMut<'_>; 1]> = bufs
            .iter_mut()
            .map(|b| [std::io::IoSliceMut::new(&mut b[..])])
            .collect();
        if let Ok(r) = recvmmsg(
            sock.as_raw_fd(),
            &mut headers,
            iovs.iter_mut(),
            MsgFlags::MSG_WAITFORONE,
            None,
        ) {
            for m in r {
                got.datagrams += 1;
                got.bytes += m.bytes as u64;
            }
            last = monotonic_ns();
        }
    }
}

/// How the fan-out's datagrams travel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawTransport {
    /// One copy per receiver, `sendmmsg`.
    Unicast,
    /// One datagram to a group every receiver joined.
    Multicast,
}

impl RawTransport {
    /// Its name in results.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unicast => "unicast",
            Self::Multicast => "multicast",
        }
    }
}

/// One receiver's share of a fan-out.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RawReceiver {
    /// The node whose namespace it ran in.
    pub node: NodeId,
    /// Datagrams it received.
    pub datagrams: u64,
    /// Datagrams per second over the sender's sending time.
    pub per_s: f64,
    /// Payload MB/s (10^6 bytes) over the same time.
    pub mb_per_s: f64,
    /// 1 − received / sent to it.
    pub loss: f64,
    /// Its CPU time per received datagram, µs.
    pub cpu_us_per_datagram: Option<f64>,
}

/// One fan-out measurement.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RawFanout {
    /// `unicast` (sendmmsg, a copy to each) or `multicast`.
    pub transport: RawTransport,
    /// Datagram payload bytes.
    pub size: usize,
    /// The sending node's namespace.
    pub sender: NodeId,
    /// Seconds the sender sent.
    pub seconds: f64,
    /// Datagrams the sender handed the kernel for each receiver.
    pub sent_per_receiver: u64,
    /// Each receiver.
    pub receivers: Vec<RawReceiver>,
    /// The receivers' mean datagrams/s.
    pub per_receiver_per_s: f64,
    /// The receivers' mean payload MB/s: the figure ring throughput per node is set against.
    pub per_receiver_mb_per_s: f64,
    /// The slowest receiver's.
    pub min_per_receiver_per_s: f64,
    /// Mean loss over receivers.
    pub loss: f64,
    /// The sender's CPU time per datagram it handed the kernel, µs.
    pub sender_cpu_us_per_datagram: Option<f64>,
    /// The sender's system calls per datagram.
    pub sender_calls_per_datagram: Option<f64>,
    /// The receivers' mean CPU time per datagram received, µs.
    pub receiver_cpu_us_per_datagram: Option<f64>,
}

fn per(num: f64, den: u64) -> Option<f64> {
    (den > 0).then(|| num / den as f64)
}

/// Builds a [`RawFanout`] from its sender's and receivers' outputs.
pub fn summarise(
    transport: RawTransport,
    size: usize,
    sender: NodeId,
    sent: &FlowSent,
    got: &[(NodeId, FlowReceived)],
) -> RawFanout {
    let sent_per_receiver = match transport {
        RawTransport::Multicast => sent.datagrams,
        RawTransport::Unicast => sent.datagrams / got.len().max(1) as u64,
    };
    let receivers: Vec<RawReceiver> = got
        .iter()
        .map(|(node, g)| RawReceiver {
            node: *node,
            datagrams: g.datagrams,
            per_s: if sent.seconds > 0.0 {
                g.datagrams as f64 / sent.seconds
            } else {
                0.0
            },
            mb_per_s: if sent.seconds > 0.0 {
                g.bytes as f64 / sent.seconds / 1e6
            } else {
                0.0
            },
            loss: if sent_per_receiver > 0 {
                (1.0 - g.datagrams as f64 / sent_per_receiver as f64).max(0.0)
            } else {
                0.0
            },
            cpu_us_per_datagram: per(g.cpu_s * 1e6, g.datagrams),
        })
        .collect();
    let n = receivers.len().max(1) as f64;
    let rx_cpu: Vec<f64> = receivers
        .iter()
        .filter_map(|r| r.cpu_us_per_datagram)
        .collect();
    RawFanout {
        transport,
        size,
        sender,
        seconds: sent.seconds,
        sent_per_receiver,
        per_receiver_per_s: receivers.iter().map(|r| r.per_s).sum::<f64>() / n,
        per_receiver_mb_per_s: receivers.iter().map(|r| r.mb_per_s).sum::<f64>() / n,
        min_per_receiver_per_s: receivers.iter().map(|r| r.per_s).fold(f64::NAN, f64::min),
        loss: receivers.iter().map(|r| r.loss).sum::<f64>() / n,
        sender_cpu_us_per_datagram: per(sent.cpu_s * 1e6, sent.datagrams),
        sender_calls_per_datagram: per(sent.calls as f64, sent.datagrams),
        receiver_cpu_us_per_datagram: (!rx_cpu.is_empty())
            .then(|| rx_cpu.iter().sum::<f64>() / rx_cpu.len() as f64),
        receivers,
    }
}

/// A child killed and reaped by PID on every path out.
struct Reap(std::process::Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Measures one fan-out in the namespaces of run prefix `prefix`: node `from` sends to
/// every node of `to` for `seconds`, datagrams of `size` bytes (at most
/// [`MAX_DATAGRAM`]; see the module's notes).
pub fn fanout(
    binary: &Path,
    prefix: &str,
    from: NodeId,
    to: &[NodeId],
    size: usize,
    transport: RawTransport,
    seconds: f64,
) -> Result<RawFanout> {
    if to.is_empty() || !(0.0..=MAX_SECONDS).contains(&seconds) {
        bail!("a fan-out needs receivers and 0-{MAX_SECONDS} s");
    }
    let size = size.clamp(1, MAX_DATAGRAM);
    let mut rx = Vec::new();
    for &n in to {
        let bind = SocketAddr::new(Cluster::netns_addr(n), FANOUT_PORT);
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &format!("{prefix}-n{n}")])
            .arg(binary)
            .args(["flow", "recv", "--bind", &bind.to_string()])
            .args(["--seconds", &format!("{}", seconds + 5.0)]);
        if transport == RawTransport::Multicast {
            c.args(["--group", &FANOUT_GROUP.to_string()]);
        }
        let mut child = c
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting a raw receiver")?;
        let out = BufReader::new(child.stdout.take().expect("piped"));
        rx.push((n, out, Reap(child)));
    }
    for (n, out, _) in rx.iter_mut() {
        let mut line = String::new();
        out.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("the raw receiver in {prefix}-n{n} did not start: {line:?}");
        }
    }
    let dests: Vec<String> = match transport {
        RawTransport::Multicast => {
            vec![SocketAddr::new(FANOUT_GROUP.into(), FANOUT_PORT).to_string()]
        }
        RawTransport::Unicast => to
            .iter()
            .map(|&n| SocketAddr::new(Cluster::netns_addr(n), FANOUT_PORT).to_string())
            .collect(),
    };
    let mut c = Command::new("ip");
    c.args(["netns", "exec", &format!("{prefix}-n{from}")])
        .arg(binary)
        .args(["flow", "send", "--size", &size.to_string()])
        .args(["--seconds", &seconds.to_string()])
        .args(["--iface", &Cluster::netns_addr(from).to_string()]);
    for d in &dests {
        c.args(["--to", d]);
    }
    let sent = c.output().context("running the raw sender")?;
    if !sent.status.success() {
        bail!(
            "the raw sender in {prefix}-n{from} failed: {}",
            String::from_utf8_lossy(&sent.stderr).trim()
        );
    }
    let sent: FlowSent = serde_json::from_slice(&sent.stdout).context("the raw sender's output")?;
    let mut got = Vec::new();
    for (n, mut out, child) in rx {
        let mut rest = String::new();
        out.read_to_string(&mut rest)?;
        drop(child);
        let g: FlowReceived = serde_json::from_str(rest.trim())
            .with_context(|| format!("the raw receiver in {prefix}-n{n}: {rest:?}"))?;
        got.push((n, g));
    }
    let f = summarise(transport, size, from, &sent, &got);
    if let Some(r) = f.receivers.iter().find(|r| r.datagrams == 0) {
        bail!(
            "raw {} from node {from}: node {} received nothing ({} sent)",
            transport.as_str(),
            r.node,
            sent.datagrams
        );
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn got(d: u64, cpu: f64) -> FlowReceived {
        FlowReceived {
            datagrams: d,
            bytes: d * 100,
            cpu_s: cpu,
        }
    }

    #[test]
    fn a_unicast_fanout_shares_the_sent_datagrams_among_receivers() {
        let sent = FlowSent {
            datagrams: 4000,
            seconds: 2.0,
            cpu_s: 0.4,
            calls: 100,
            errors: 0,
        };
        let f = summarise(
            RawTransport::Unicast,
            100,
            1,
            &sent,
            &[
                (2, got(1000, 0.1)),
                (3, got(1000, 0.1)),
                (4, got(500, 0.1)),
                (5, got(0, 0.0)),
            ],
        );
        assert_eq!(f.sent_per_receiver, 1000);
        assert_eq!(f.receivers[2].per_s, 250.0);
        assert_eq!(f.receivers[2].mb_per_s, 250.0 * 100.0 / 1e6);
        assert_eq!(f.receivers[2].loss, 0.5);
        assert_eq!(f.receivers[3].loss, 1.0);
        assert_eq!(f.receivers[3].cpu_us_per_datagram, None);
        assert_eq!(f.per_receiver_per_s, (500.0 + 500.0 + 250.0) / 4.0);
        assert_eq!(f.min_per_receiver_per_s, 0.0);
        assert_eq!(f.sender_cpu_us_per_datagram, Some(100.0));
        assert_eq!(f.sender_calls_per_datagram, Some(0.025));
        // 100, 100 and 200 µs: node 5 received nothing and has no figure.
        assert_eq!(f.receiver_cpu_us_per_datagram, Some(400.0 / 3.0));
    }

    #[test]
    fn a_multicast_fanout_sends_each_datagram_to_every_receiver() {
        let sent = FlowSent {
            datagrams: 1000,
            seconds: 1.0,
            ..FlowSent::default()
        };
        let f = summarise(RawTransport::Multicast, 64, 1, &sent, &[(2, got(900, 0.0))]);
        assert_eq!(f.sent_per_receiver, 1000);
        assert!((f.loss - 0.1).abs() < 1e-12);
        assert_eq!(f.per_receiver_per_s, 900.0);
        assert_eq!(f.per_receiver_mb_per_s, 0.09);
    }

    /// Both ends on loopback in this process: the unicast fan-out with sendmmsg reaches
    /// each receiver, and what arrives is what was sent for it at most.
    #[test]
    fn a_fanout_on_loopback_reaches_every_receiver() {
        let rx: Vec<_> = (0..3)
            .map(|_| {
                let s = UdpSocket::bind("127.0.0.1:0").unwrap();
                s.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                s
            })
            .collect();
        let to: Vec<SocketAddr> = rx.iter().map(|s| s.local_addr().unwrap()).collect();
        let sent = flow_send(&to, None, 200, 0.001).unwrap();
        assert!(sent.datagrams >= 3, "{sent:?}");
        for s in &rx {
            let mut buf = [0u8; 512];
            let (n, _) = s.recv_from(&mut buf).unwrap();
            assert_eq!(n, 200);
        }
    }
}
