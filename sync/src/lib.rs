//! The synchronisation engine and the services that ride on the ring.
//!
//! Not built yet: this crate is reserved for issue 5 (sync engine and checkpoint
//! service). It holds no code so that nothing here can be mistaken for a working part.
#![forbid(unsafe_code)]
