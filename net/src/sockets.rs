//! The node's UDP sockets, configured with socket2 and handed to mio.
//!
//! - The unicast socket is bound to `bind:port`. Tokens and every point-to-point packet go
//!   out of it, and so do multicasts (with the outgoing interface set to `bind`, TTL 1, loop
//!   on), so a receiver always sees a node's datagrams come from `bind:port` and can map
//!   them to its id. Multicast loop is on only where another node of the node list has an
//!   address of this host (of its network namespace): a node never needs its own multicasts
//!   back, and looping each to itself cost the sender about a tenth of its CPU time at
//!   maximum load (the kernel's delivery to its own group socket, the read, the drop).
//! - With the multicast transport, a second socket is bound to `group:port` (address reuse
//!   on, so several nodes on one host can bind it) and joins the group on `bind`'s
//!   interface. IPv6 groups join on the interface that holds `bind`... which needs its index:
//!   ringlab uses index 0 (the kernel's choice), documented as a limit.

use crate::config::{NodeConfig, Transport};
use crate::drops::NodeDrops;
use mio::net::UdpSocket;
use socket2::{Domain, Protocol, Socket, Type};
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};

/// A node's sockets.
pub struct Sockets {
    /// Bound to bind:port.
    pub unicast: UdpSocket,
    /// Bound to group:port (multicast transport).
    pub multicast: Option<UdpSocket>,
    /// Where multicasts go.
    pub group: SocketAddr,
    /// (SO_RCVBUF, SO_SNDBUF) as the kernel granted them.
    pub granted: (usize, usize),
}

impl Sockets {
    /// Opens and configures the sockets of a node.
    pub fn open(cfg: &NodeConfig) -> std::io::Result<Self> {
        let local = cfg.local_addr();
        let ifindex = match cfg.bind {
            IpAddr::V6(a) => interface_index_v6(&a)?,
            IpAddr::V4(_) => 0,
        };
        let s = Socket::new(Domain::for_address(local), Type::DGRAM, Some(Protocol::UDP))?;
        s.set_nonblocking(true)?;
        if let Some(n) = cfg.recv_buffer {
            s.set_recv_buffer_size(n)?;
        }
        if let Some(n) = cfg.send_buffer {
            s.set_send_buffer_size(n)?;
        }
        // A link-local IPv6 group needs its interface as the scope, to bind and to send to.
        let group = match cfg.mcast_group {
            IpAddr::V6(g) => SocketAddr::V6(std::net::SocketAddrV6::new(g, cfg.port, 0, ifindex)),
            IpAddr::V4(_) => SocketAddr::new(cfg.mcast_group, cfg.port),
        };
        let mcast_loop = cfg
            .nodes
            .iter()
            .any(|p| p.id != cfg.node_id && is_local(p.addr));
        match cfg.bind {
            IpAddr::V4(a) => {
                s.set_multicast_if_v4(&a)?;
                s.set_multicast_ttl_v4(1)?;
                s.set_multicast_loop_v4(mcast_loop)?;
            }
            IpAddr::V6(_) => {
                s.set_multicast_if_v6(ifindex)?;
                s.set_multicast_hops_v6(1)?;
                s.set_multicast_loop_v6(mcast_loop)?;
            }
        }
        s.bind(&local.into())?;
        let granted = (s.recv_buffer_size()?, s.send_buffer_size()?);
        let unicast = UdpSocket::from_std(s.into());
        let multicast = if cfg.transport == Transport::Multicast {
            let m = Socket::new(Domain::for_address(group), Type::DGRAM, Some(Protocol::UDP))?;
            m.set_nonblocking(true)?;
            m.set_reuse_address(true)?;
            m.set_reuse_port(true)?;
            if let Some(n) = cfg.recv_buffer {
                m.set_recv_buffer_size(n)?;
            }
            match (cfg.mcast_group, cfg.bind) {
                (IpAddr::V4(g), IpAddr::V4(a)) => m.join_multicast_v4(&g, &a)?,
                (IpAddr::V6(g), _) => m.join_multicast_v6(&g, ifindex)?,
                _ => {
                    return Err(std::io::Error::new(
                        ErrorKind::InvalidInput,
                        "group and bind differ in family",
                    ))
                }
            }
            m.bind(&group.into())?;
            Some(UdpSocket::from_std(m.into()))
        } else {
            None
        };
        Ok(Self {
            unicast,
            multicast,
            group,
            granted,
        })
    }
}

/// Returns whether `addr` is an address of this host (of its network namespace): whether a
/// socket can bind it. In doubt (any error but "not available"), says yes, which keeps
/// multicast loop on.
fn is_local(addr: IpAddr) -> bool {
    match std::net::UdpSocket::bind(SocketAddr::new(addr, 0)) {
        Ok(_) => true,
        Err(e) => e.kind() != ErrorKind::AddrNotAvailable,
    }
}

/// Returns the index of the interface that holds the IPv6 address `a`.
fn interface_index_v6(a: &std::net::Ipv6Addr) -> std::io::Result<u32> {
    let ifs = nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)?;
    for i in ifs {
        let holds = i
            .address
            .as_ref()
            .and_then(|s| s.as_sockaddr_in6())
            .is_some_and(|s| s.ip() == *a);
        if holds {
            return nix::net::if_::if_nametoindex(i.interface_name.as_str())
                .map_err(std::io::Error::from);
        }
    }
    Err(std::io::Error::new(
        ErrorKind::NotFound,
        format!("no interface holds {a}"),
    ))
}

/// Sends one datagram; a full buffer or an error is counted, never fatal.
pub fn send(sock: &UdpSocket, data: &[u8], to: SocketAddr, drops: &mut NodeDrops) {
    loop {
        match sock.send_to(data, to) {
            Ok(_) => return,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                drops.send_would_block += 1;
                return;
            }
            Err(e) => {
                drops.send_errors += 1;
                tracing::debug!(%to, error = %e, "send failed");
                return;
            }
        }
    }
}

/// Returns how many datagrams the kernel dropped at `sock` (its receive buffer full,
/// mostly) since the socket was opened: the `drops` column of `/proc/net/udp` (or
/// `/proc/net/udp6`) on the line of the socket's inode, found by `fstat` of its descriptor.
/// Read when asked (for `stats`), never on the datagram path. `None` where /proc does not
/// list the socket (another network namespace's /proc, no /proc).
pub fn kernel_drops(sock: &impl std::os::fd::AsFd) -> Option<u64> {
    let inode = rustix::fs::fstat(sock).ok()?.st_ino;
    ["/proc/net/udp", "/proc/net/udp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(t).ok())
        .find_map(|table| drops_of_inode(&table, inode))
}

/// Returns the `drops` column of the line of socket `inode` in a `/proc/net/udp` table.
fn drops_of_inode(table: &str, inode: u64) -> Option<u64> {
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next()?.split_whitespace().collect();
    // The header names `tx_queue rx_queue` and `tr tm->when` as two columns where the rows
    // have one each; the inode is the 10th value of a row and drops its last.
    if header.last() != Some(&"drops") {
        return None;
    }
    lines.find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.get(9)?.parse::<u64>().ok()? == inode)
            .then(|| cols.last()?.parse().ok())
            .flatten()
    })
}

/// Batched receive: one `recvmmsg` fills up to [`BATCH`] datagrams.
pub const BATCH: usize = 32;

/// Buffers for batched receive. Each slot holds `limit + 1` bytes, so a datagram that fills a
/// slot completely is known to be above the limit (the kernel truncates it).
pub struct RecvBatch {
    slots: Vec<Vec<u8>>,
    headers: nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
    got: Vec<(usize, Option<SocketAddr>)>,
}

impl RecvBatch {
    /// Creates buffers for datagrams of up to `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            slots: (0..BATCH).map(|_| vec![0u8; limit + 1]).collect(),
            headers: nix::sys::socket::MultiHeaders::preallocate(BATCH, None),
            got: Vec::with_capacity(BATCH),
        }
    }

    /// Reads what is waiting (up to [`BATCH`] datagrams) with one system call; returns how
    /// many, or the error (`WouldBlock` when nothing waits).
    pub fn recv(&mut self, sock: &UdpSocket) -> std::io::Result<usize> {
        use nix::sys::socket::{recvmmsg, MsgFlags};
        use std::os::fd::AsRawFd;
        self.got.clear();
        let mut iovs: Vec<[std::io::IoSliceMut<'_>; 1]> = self
            .slots
            .iter_mut()
            .map(|s| [std::io::IoSliceMut::new(&mut s[..])])
            .collect();
        let res = recvmmsg(
            sock.as_raw_fd(),
            &mut self.headers,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )
        .map_err(std::io::Error::from)?;
        for m in res {
            let addr = m.address.and_then(|a: nix::sys::socket::SockaddrStorage| {
                if let Some(v4) = a.as_sockaddr_in() {
                    Some(SocketAddr::from(std::net::SocketAddrV4::from(*v4)))
                } else {
                    a.as_sockaddr_in6()
                        .map(|v6| SocketAddr::from(std::net::SocketAddrV6::from(*v6)))
                }
            });
            self.got.push((m.bytes, addr));
        }
        Ok(self.got.len())
    }

    /// Returns datagram `i` of the last batch and its sender.
    pub fn get(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        let (n, a) = self.got[i];
        (&self.slots[i][..n.min(self.slots[i].len())], a)
    }
}

/// Most datagrams one `sendmmsg` hands the kernel (a turn's datagrams go in as many calls as
/// they need).
pub const SEND_BATCH: usize = 256;

/// The datagrams of one turn, in order, sent together: [`SendBatch::flush`] hands them to the
/// kernel with one `sendmmsg` (every frame of a token visit, each to every destination of the
/// unicast transport's fan-out, the token among them in its place), instead of one system
/// call per datagram. The kernel sends them in the order they were pushed.
pub struct SendBatch {
    datagrams: Vec<(bytes::Bytes, SocketAddr)>,
    addrs: Vec<Option<nix::sys::socket::SockaddrStorage>>,
    headers: nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>,
}

impl Default for SendBatch {
    fn default() -> Self {
        Self {
            datagrams: Vec::new(),
            addrs: Vec::with_capacity(SEND_BATCH),
            headers: nix::sys::socket::MultiHeaders::preallocate(SEND_BATCH, None),
        }
    }
}

impl SendBatch {
    /// Queues `data` to `to`.
    pub fn push(&mut self, data: bytes::Bytes, to: SocketAddr) {
        self.datagrams.push((data, to));
    }

    /// Returns whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }

    /// Sends every queued datagram from `sock`, in order, with as few `sendmmsg` calls as
    /// [`SEND_BATCH`] allows. A datagram the kernel refuses (a full buffer, an error) is
    /// counted and skipped, as [`send`] counts it, and the rest still go.
    pub fn flush(&mut self, sock: &UdpSocket, drops: &mut NodeDrops) {
        use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, SockaddrStorage};
        use std::os::fd::AsRawFd;
        let mut start = 0;
        while start < self.datagrams.len() {
            let chunk = &self.datagrams[start..(start + SEND_BATCH).min(self.datagrams.len())];
            let slices: Vec<[std::io::IoSlice<'_>; 1]> = chunk
                .iter()
                .map(|(d, _)| [std::io::IoSlice::new(d)])
                .collect();
            self.addrs.clear();
            self.addrs
                .extend(chunk.iter().map(|(_, a)| Some(SockaddrStorage::from(*a))));
            let cmsgs: [ControlMessage<'_>; 0] = [];
            match sendmmsg(
                sock.as_raw_fd(),
                &mut self.headers,
                &slices,
                &self.addrs,
                cmsgs,
                MsgFlags::empty(),
            ) {
                Ok(res) => start += res.count().max(1),
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => {
                    drops.send_would_block += 1;
                    start += 1;
                }
                Err(e) => {
                    drops.send_errors += 1;
                    tracing::debug!(to = %chunk[0].1, error = %e, "send failed");
                    start += 1;
                }
            }
        }
        self.datagrams.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_address_of_this_host_is_local() {
        assert!(is_local("127.0.0.1".parse().unwrap()));
        assert!(is_local("127.0.0.5".parse().unwrap()));
        // TEST-NET-1: never an address of a test machine.
        assert!(!is_local("192.0.2.77".parse().unwrap()));
    }

    #[test]
    fn the_drops_column_is_read_for_the_sockets_inode() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  153: 0100007F:1525 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 81234 2 0000000000000000 0
  154: 0200007F:1525 00000000:0000 07 00000000:00034000 00:00000000 00000000     0        0 81299 2 0000000000000000 1734
";
        assert_eq!(drops_of_inode(table, 81299), Some(1734));
        assert_eq!(drops_of_inode(table, 81234), Some(0));
        assert_eq!(drops_of_inode(table, 5), None);
    }

    /// A socket nobody reads, flooded past its receive buffer: the kernel's drops show.
    #[test]
    fn a_flood_past_the_receive_buffer_shows_in_the_kernel_drops() {
        let rx = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        rx.set_recv_buffer_size(4096).unwrap();
        rx.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .unwrap();
        let rx: std::net::UdpSocket = rx.into();
        let to = rx.local_addr().unwrap();
        assert_eq!(kernel_drops(&rx), Some(0));
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..2000 {
            let _ = tx.send_to(&[7u8; 1000], to);
        }
        let dropped = kernel_drops(&rx).unwrap();
        assert!(dropped > 0 && dropped <= 2000, "{dropped}");
    }
}
