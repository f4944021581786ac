//! The runtime: one mio event loop per node over socket2 UDP sockets.
//!
//! Not built yet: this crate is reserved for issue 3 (transports, node binary,
//! loopback clusters). It holds no code so that nothing here can be mistaken for a working part.
#![forbid(unsafe_code)]
