//! Where an experiment's nodes run: the `local` backend (network namespaces on this
//! machine, [`crate::runner`]'s default) or the `ssh` backend (the hosts of an
//! [`inventory::Inventory`], reached with the system's OpenSSH: one multiplexed connection
//! per host, [`ssh::Ssh`]). The ssh backend does on each host what the local one does in
//! namespaces: uploads the binary and configs, starts and signals nodes by PID
//! ([`remote::RemoteCluster`]), applies network faults with nftables ([`nft::NetState`]),
//! gathers records, and maps them onto the controller's clock with a measured offset and
//! its uncertainty ([`clock`]).

pub mod clock;
pub mod inventory;
pub mod nft;
pub mod remote;
pub mod ssh;
