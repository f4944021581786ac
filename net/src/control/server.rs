//! The node side of the control protocol: the listening Unix socket, its connections, their
//! line buffers.
//!
//! Guarantees:
//! - non-blocking throughout (the node's loop never waits on a client); every complete line
//!   gets exactly one reply line, in order, for as long as the client is served;
//! - bounded: at most [`MAX_CLIENTS`] connections at once (one more takes the place of the
//!   longest idle client if it has been idle 10 s, or gets a one-line error reply and is
//!   closed); at most 1 MiB from a client without a newline, and at most
//!   [`MAX_UNSENT`] bytes of replies the client has not taken: a client past either bound is
//!   dropped and its buffers freed; a client's lines are read only as fast as they are
//!   answered, so its input never piles up;
//! - every connection is closed on every path: the peer closed and nothing is owed (or what
//!   is owed cannot be written), a read or write error, a bound, the node exiting
//!   ([`Server::close_all`]);
//! - the socket is created with mode 0600 whatever the umask, and its directory, when the
//!   node creates it, with mode 0700 ([`bind`]).

use super::proto::{ControlStats, Reply, Request};
use crate::clock::monotonic_ns;
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The first token handed to a connection; the tokens below are the node's own sockets.
const FIRST_CONN: usize = 16;

/// Most connections served at once.
pub const MAX_CLIENTS: usize = 64;

/// How long a client must have been idle to be dropped for a new one when the server is
/// full.
const IDLE_EVICT_NS: u64 = 10_000_000_000;

/// Most bytes buffered from a client without a complete line.
const MAX_PENDING: usize = 1 << 20;

/// Most bytes of replies a client may leave unread before it is dropped.
pub const MAX_UNSENT: usize = 1 << 20;

/// Bytes read from a client at a time.
const READ_CHUNK: usize = 4096;

/// Binds the control socket at `path`: creates its directory (0700) when missing, replaces
/// a socket a previous run left, and makes the socket 0600, with the umask narrowed around
/// `bind` so that the socket is never open to others, not even for an instant. The node
/// calls this while it is single-threaded (the umask is the process's).
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::stable::create_private_dir(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let bound = UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = bound?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

struct Conn {
    stream: UnixStream,
    /// When the client last showed activity (connected, or an event on its socket).
    active_ns: u64,
    inbuf: Vec<u8>,
    /// How much of `inbuf` holds no newline.
    scanned: usize,
    outbuf: Vec<u8>,
}

/// The control socket and its open connections.
pub struct Server {
    listener: UnixListener,
    conns: HashMap<Token, Conn>,
    next_conn: usize,
    /// The connection taken out to be answered, if any.
    serving: Option<Token>,
    stats: ControlStats,
}

/// Why a connection ends before the peer closed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DropWhy {
    /// A read or write failed.
    Error,
    /// More than `MAX_PENDING` bytes without a newline.
    LineTooLong,
    /// More than `MAX_UNSENT` bytes of replies unread.
    NotReading,
}

/// One connection taken out of the server while its requests are answered.
pub struct Session {
    token: Token,
    conn: Conn,
    /// The peer closed its side (read returned 0).
    closed: bool,
    /// The connection is to be dropped.
    dropped: Option<DropWhy>,
}

impl Server {
    /// Serves `listener` (already bound and registered by the node).
    pub fn new(listener: UnixListener) -> Self {
        Self {
            listener,
            conns: HashMap::new(),
            next_conn: FIRST_CONN,
            serving: None,
            stats: ControlStats::default(),
        }
    }

    /// Returns the connection counters and the clients served now.
    pub fn stats(&self) -> ControlStats {
        ControlStats {
            clients: (self.conns.len() + usize::from(self.serving.is_some())) as u64,
            ..self.stats.clone()
        }
    }

    /// Accepts every waiting connection and registers it with `registry`; past
    /// [`MAX_CLIENTS`], answers one error line and closes the connection.
    pub fn accept(&mut self, registry: &Registry) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let now = monotonic_ns();
                    if self.conns.len() >= MAX_CLIENTS {
                        // Room is made by dropping the longest idle client, if it has been
                        // idle long enough; a slow or silent client cannot lock others out.
                        let idlest = self
                            .conns
                            .iter()
                            .min_by_key(|(_, c)| c.active_ns)
                            .filter(|(_, c)| now.saturating_sub(c.active_ns) >= IDLE_EVICT_NS)
                            .map(|(t, _)| *t);
                        if let Some(t) = idlest {
                            self.conns.remove(&t);
                            self.stats.dropped += 1;
                            tracing::debug!("idle control client dropped for a new one");
                        }
                    }
                    if self.conns.len() >= MAX_CLIENTS {
                        self.stats.refused += 1;
                        let line = Reply::error(format!(
                            "too many control clients ({MAX_CLIENTS} connected); try again later"
                        ))
                        .to_line()
                            + "\n";
                        // A fresh socket's buffer takes one line; if not, the close says it.
                        let _ = stream.write(line.as_bytes());
                        continue;
                    }
                    let t = Token(self.next_conn);
                    self.next_conn += 1;
                    if registry
                        .register(&mut stream, t, Interest::READABLE | Interest::WRITABLE)
                        .is_ok()
                    {
                        self.stats.accepted += 1;
                        self.conns.insert(
                            t,
                            Conn {
                                stream,
                                active_ns: now,
                                inbuf: Vec::new(),
                                scanned: 0,
                                outbuf: Vec::new(),
                            },
                        );
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                    ) =>
                {
                    continue
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a control connection failed");
                    return;
                }
            }
        }
    }

    /// Takes connection `t` out to answer what waits on it; `None` when `t` is no connection.
    pub fn read(&mut self, t: Token) -> Option<Session> {
        let mut conn = self.conns.remove(&t)?;
        conn.active_ns = monotonic_ns();
        self.serving = Some(t);
        Some(Session {
            token: t,
            conn,
            closed: false,
            dropped: None,
        })
    }

    /// Writes what a session owes its client and puts the connection back; closes it
    /// instead when it is to be dropped, or the client closed and nothing is left to write.
    pub fn finish(&mut self, mut s: Session) {
        self.serving = None;
        if s.dropped.is_none() && write_out(&mut s.conn).is_err() {
            s.dropped = Some(DropWhy::Error);
        }
        if let Some(why) = s.dropped {
            self.stats.dropped += 1;
            tracing::debug!(?why, unsent = s.conn.outbuf.len(), "control client dropped");
            // Dropping the stream closes it (and takes it out of the poll).
            return;
        }
        if s.closed && s.conn.outbuf.is_empty() {
            return;
        }
        self.conns.insert(s.token, s.conn);
    }

    /// Writes what every connection is owed, as far as each takes it without waiting, then
    /// closes them all (the node exits).
    pub fn close_all(&mut self) {
        for (_, mut c) in self.conns.drain() {
            let _ = write_out(&mut c);
        }
    }
}

impl Session {
    /// Takes the next complete line, reading more from the client when none is buffered;
    /// returns its request, or the error reply for a line that is not one. `None` when no
    /// complete line is left for now, the client closed, or it is to be dropped.
    pub fn next_request(&mut self) -> Option<Result<Request, Reply>> {
        let c = &mut self.conn;
        loop {
            if self.dropped.is_some() {
                return None;
            }
            if let Some(i) = c.inbuf[c.scanned..].iter().position(|&b| b == b'\n') {
                let end = c.scanned + i;
                let parsed = serde_json::from_slice(&c.inbuf[..=end])
                    .map_err(|e| Reply::error(format!("bad command: {e}")));
                c.inbuf.drain(..=end);
                c.scanned = 0;
                if c.inbuf.capacity() > 16 * READ_CHUNK && c.inbuf.len() < READ_CHUNK {
                    c.inbuf.shrink_to(2 * READ_CHUNK);
                }
                return Some(parsed);
            }
            c.scanned = c.inbuf.len();
            if self.closed {
                return None;
            }
            if c.inbuf.len() > MAX_PENDING {
                self.dropped = Some(DropWhy::LineTooLong);
                return None;
            }
            let at = c.inbuf.len();
            c.inbuf.resize(at + READ_CHUNK, 0);
            let got = c.stream.read(&mut c.inbuf[at..]);
            c.inbuf.truncate(at + *got.as_ref().unwrap_or(&0));
            match got {
                Ok(0) => self.closed = true,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return None,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => self.dropped = Some(DropWhy::Error),
            }
        }
    }

    /// Queues one reply line and writes what the client takes; a client that leaves more
    /// than [`MAX_UNSENT`] bytes unread is to be dropped.
    pub fn reply(&mut self, r: &Reply) {
        if self.dropped.is_some() {
            return;
        }
        self.conn.outbuf.extend_from_slice(r.to_line().as_bytes());
        self.conn.outbuf.push(b'\n');
        if write_out(&mut self.conn).is_err() {
            self.dropped = Some(DropWhy::Error);
        } else if self.conn.outbuf.len() > MAX_UNSENT {
            self.dropped = Some(DropWhy::NotReading);
        }
    }
}

/// Writes as much of `c`'s replies as the socket takes now; an error means the connection
/// is dead.
fn write_out(c: &mut Conn) -> std::io::Result<()> {
    let mut done = 0;
    let res = loop {
        if done == c.outbuf.len() {
            break Ok(());
        }
        match c.stream.write(&c.outbuf[done..]) {
            Ok(0) => break Err(ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    c.outbuf.drain(..done);
    if c.outbuf.is_empty() && c.outbuf.capacity() > 64 * 1024 {
        c.outbuf = Vec::new();
    }
    res
}
