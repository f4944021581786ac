//! The node side of the control protocol: the listening Unix socket, its connections, their
//! line buffers.
//!
//! Guarantees: non-blocking throughout (the node's loop never waits on a client); every
//! complete line gets exactly one reply line, in order; a client that sends more than 1 MiB
//! without a newline is dropped; a connection is kept until the peer closed and everything
//! owed to it is written; the socket is created with mode 0600 whatever the umask, and its
//! directory, when the node creates it, with mode 0700 ([`bind`]).

use super::proto::{Reply, Request};
use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The first token handed to a connection; the tokens below are the node's own sockets.
const FIRST_CONN: usize = 16;

/// Most bytes buffered from a client without a complete line.
const MAX_PENDING: usize = 1 << 20;

/// Binds the control socket at `path`: creates its directory (0700) when missing, replaces
/// a socket a previous run left, and makes the socket 0600, with the umask narrowed around
/// `bind` so that the socket is never open to others, not even for an instant. The node
/// calls this while it is single-threaded (the umask is the process's).
pub(crate) fn bind(path: &Path) -> std::io::Result<UnixListener> {
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
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
}

/// The control socket and its open connections.
pub(crate) struct Server {
    listener: UnixListener,
    conns: HashMap<Token, Conn>,
    next_conn: usize,
}

/// One connection taken out of the server while its requests are answered.
pub(crate) struct Session {
    token: Token,
    conn: Conn,
    closed: bool,
}

impl Server {
    /// Serves `listener` (already bound and registered by the node).
    pub(crate) fn new(listener: UnixListener) -> Self {
        Self {
            listener,
            conns: HashMap::new(),
            next_conn: FIRST_CONN,
        }
    }

    /// Accepts every waiting connection and registers it with `registry`.
    pub(crate) fn accept(&mut self, registry: &Registry) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    let t = Token(self.next_conn);
                    self.next_conn += 1;
                    if registry
                        .register(&mut stream, t, Interest::READABLE | Interest::WRITABLE)
                        .is_ok()
                    {
                        self.conns.insert(
                            t,
                            Conn {
                                stream,
                                inbuf: Vec::new(),
                                outbuf: Vec::new(),
                            },
                        );
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => return,
            }
        }
    }

    /// Takes connection `t` out and reads what waits on it; `None` when `t` is no connection.
    pub(crate) fn read(&mut self, t: Token) -> Option<Session> {
        let mut c = self.conns.remove(&t)?;
        let mut closed = false;
        let mut tmp = [0u8; 4096];
        loop {
            match c.stream.read(&mut tmp) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => {
                    c.inbuf.extend_from_slice(&tmp[..n]);
                    if c.inbuf.len() > MAX_PENDING {
                        closed = true;
                        break;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        Some(Session {
            token: t,
            conn: c,
            closed,
        })
    }

    /// Writes what a session owes its client and puts the connection back, unless the
    /// client closed and nothing is left to write.
    pub(crate) fn finish(&mut self, mut s: Session) {
        write_out(&mut s.conn);
        if !s.closed || !s.conn.outbuf.is_empty() {
            self.conns.insert(s.token, s.conn);
        }
    }

    /// Writes what every connection is owed (before the node exits).
    pub(crate) fn flush(&mut self) {
        for c in self.conns.values_mut() {
            write_out(c);
        }
    }
}

impl Session {
    /// Takes the next complete line; returns its request, or the error reply for a line
    /// that is not one. `None` when no complete line is left.
    pub(crate) fn next_request(&mut self) -> Option<Result<Request, Reply>> {
        let pos = self.conn.inbuf.iter().position(|&b| b == b'\n')?;
        let line: Vec<u8> = self.conn.inbuf.drain(..=pos).collect();
        Some(serde_json::from_slice(&line).map_err(|e| Reply::error(format!("bad command: {e}"))))
    }

    /// Queues one reply line.
    pub(crate) fn reply(&mut self, r: &Reply) {
        self.conn.outbuf.extend_from_slice(r.to_line().as_bytes());
        self.conn.outbuf.push(b'\n');
    }
}

fn write_out(c: &mut Conn) {
    while !c.outbuf.is_empty() {
        match c.stream.write(&c.outbuf) {
            Ok(n) => {
                c.outbuf.drain(..n);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}
