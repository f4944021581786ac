//! The runtime's one clock.
//!
//! Every time a node records, and every time the harness stamps a fault, comes from
//! [`monotonic_ns`]; the ring itself never reads a clock (it is handed `now`).

/// Returns CLOCK_MONOTONIC in ns: shared by every process and network namespace of a host,
/// so send and delivery times from different nodes compare directly.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}
