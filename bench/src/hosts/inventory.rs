//! The ssh backend's inventory: the hosts an experiment runs on, read from TOML.
//!
//! ```toml
//! [ssh]                       # defaults for every host (each may override)
//! user = "ringlab"
//! identity = "~/.ssh/id_ed25519"
//! # config = "/dev/null"      # an ssh_config file instead of the user's own
//! # known_hosts = "hosts.known"
//! # strict_host_key_checking = "yes"   # or "accept-new"
//! # sudo = true               # run nft through `sudo -n`
//!
//! [[host]]
//! name = "a"                  # a-z, 0-9 and '-'; names the host in results and errors
//! address = "192.0.2.11"      # what ssh connects to
//! iface = "eth1"              # the interface the ring uses there
//! ring_addr = "10.9.0.1"      # its address on that interface: the nodes bind it
//! nodes = [1]                 # the node ids it runs
//! ```
//!
//! Every node id of the experiment is on exactly one host. Several nodes on one host share
//! its ring address and differ by port (`port`, `port + 1` ...), which only the unicast
//! transport can do (a multicast group has one port).

use anyhow::{bail, Context, Result};
use ringlab_ring::NodeId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Defaults every host takes unless it says otherwise.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SshDefaults {
    /// Login user.
    pub user: Option<String>,
    /// Private key file (`-i`).
    pub identity: Option<PathBuf>,
    /// SSH port.
    pub port: Option<u16>,
    /// An ssh_config file (`-F`) instead of the user's own.
    pub config: Option<PathBuf>,
    /// A known_hosts file instead of the user's own.
    pub known_hosts: Option<PathBuf>,
    /// `StrictHostKeyChecking`: `yes` (the default) or `accept-new`.
    pub strict_host_key_checking: Option<String>,
    /// Seconds to wait for a connection (`ConnectTimeout`).
    pub connect_timeout_s: Option<u32>,
    /// How many times a remote call is tried before it fails (with back-off between).
    pub attempts: Option<u32>,
    /// Run `nft` through `sudo -n` (a user allowed to run nft without a password).
    pub sudo: Option<bool>,
    /// The directory under which the run's own directory is made on the host.
    pub dir: Option<PathBuf>,
    /// A `ProxyCommand` (a jump host, or a way into a network namespace).
    pub proxy_command: Option<String>,
}

/// One host as written in the file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HostEntry {
    /// The host's name in results and messages.
    pub name: String,
    /// What ssh connects to.
    pub address: String,
    /// The interface the ring uses.
    pub iface: String,
    /// The ring's address on it.
    pub ring_addr: IpAddr,
    /// The node ids it runs.
    pub nodes: Vec<NodeId>,
    /// Overrides of the defaults.
    #[serde(flatten)]
    pub ssh: SshDefaults,
}

/// The file.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct InventoryFile {
    /// Defaults.
    #[serde(default)]
    pub ssh: SshDefaults,
    /// Hosts.
    #[serde(rename = "host")]
    pub hosts: Vec<HostEntry>,
}

/// One host with its defaults applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Host {
    /// Its name.
    pub name: String,
    /// What ssh connects to.
    pub address: String,
    /// Login user (none: ssh's default).
    pub user: Option<String>,
    /// SSH port (none: ssh's default).
    pub port: Option<u16>,
    /// Private key (none: ssh's default).
    pub identity: Option<PathBuf>,
    /// ssh_config file.
    pub config: Option<PathBuf>,
    /// known_hosts file.
    pub known_hosts: Option<PathBuf>,
    /// `StrictHostKeyChecking`.
    pub strict_host_key_checking: String,
    /// `ConnectTimeout`, s.
    pub connect_timeout_s: u32,
    /// Tries per remote call.
    pub attempts: u32,
    /// nft through `sudo -n`.
    pub sudo: bool,
    /// Where the run's directory is made.
    pub dir: PathBuf,
    /// `ProxyCommand`.
    pub proxy_command: Option<String>,
    /// The ring's interface.
    pub iface: String,
    /// The ring's address.
    pub ring_addr: IpAddr,
    /// Its node ids, ascending.
    pub nodes: Vec<NodeId>,
}

/// Every host of a run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Inventory {
    /// The file it was read from.
    pub path: PathBuf,
    /// The hosts, in the file's order.
    pub hosts: Vec<Host>,
}

fn expand_home(p: &Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.into(),
    }
}

impl Inventory {
    /// Reads and checks an inventory file (relative key and known_hosts paths are taken
    /// from the file's directory).
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the inventory {}", path.display()))?;
        let file: InventoryFile =
            toml::from_str(&text).with_context(|| format!("the inventory {}", path.display()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_file(file, path, base)
    }

    /// Applies the defaults and checks the hosts.
    pub fn from_file(file: InventoryFile, path: &Path, base: &Path) -> Result<Self> {
        if file.hosts.is_empty() {
            bail!("the inventory {} lists no [[host]]", path.display());
        }
        let resolve = |p: Option<&PathBuf>| {
            p.map(|p| {
                let p = expand_home(p);
                if p.is_relative() {
                    base.join(p)
                } else {
                    p
                }
            })
        };
        let mut names = BTreeSet::new();
        let mut ids = BTreeSet::new();
        let mut hosts = Vec::new();
        for h in file.hosts {
            let d = &file.ssh;
            let o = &h.ssh;
            let ok_name = !h.name.is_empty()
                && h.name.len() <= 32
                && h.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok_name {
                bail!(
                    "host name {:?}: 1-32 characters of a-z, 0-9 and '-' (it names files and directories)",
                    h.name
                );
            }
            if !names.insert(h.name.clone()) {
                bail!("host {:?} is listed twice", h.name);
            }
            if h.nodes.is_empty() {
                bail!("host {:?} runs no node (nodes = [])", h.name);
            }
            for &n in &h.nodes {
                if !ids.insert(n) {
                    bail!("node {n} is on two hosts (host {:?} and another)", h.name);
                }
            }
            if h.iface.is_empty() || h.iface.contains(|c: char| !c.is_ascii_graphic()) {
                bail!(
                    "host {:?}: iface {:?} is not an interface name",
                    h.name,
                    h.iface
                );
            }
            let strict = o
                .strict_host_key_checking
                .clone()
                .or_else(|| d.strict_host_key_checking.clone())
                .unwrap_or_else(|| "yes".into());
            if !["yes", "accept-new"].contains(&strict.as_str()) {
                bail!(
                    "host {:?}: strict_host_key_checking = {strict:?}: say \"yes\" or \"accept-new\" (a run never trusts an unknown key silently)",
                    h.name
                );
            }
            let dir = o
                .dir
                .clone()
                .or_else(|| d.dir.clone())
                .unwrap_or_else(|| "/tmp".into());
            if !dir.is_absolute() || dir.to_str().is_none_or(|s| s.contains(['\'', '\n'])) {
                bail!(
                    "host {:?}: dir {:?} must be an absolute path without quotes",
                    h.name,
                    dir
                );
            }
            let mut nodes = h.nodes.clone();
            nodes.sort_unstable();
            hosts.push(Host {
                name: h.name,
                address: h.address,
                user: o.user.clone().or_else(|| d.user.clone()),
                port: o.port.or(d.port),
                identity: resolve(o.identity.as_ref().or(d.identity.as_ref())),
                config: resolve(o.config.as_ref().or(d.config.as_ref())),
                known_hosts: resolve(o.known_hosts.as_ref().or(d.known_hosts.as_ref())),
                strict_host_key_checking: strict,
                connect_timeout_s: o.connect_timeout_s.or(d.connect_timeout_s).unwrap_or(10),
                attempts: o.attempts.or(d.attempts).unwrap_or(5).max(1),
                sudo: o.sudo.or(d.sudo).unwrap_or(false),
                dir,
                proxy_command: o.proxy_command.clone().or_else(|| d.proxy_command.clone()),
                iface: h.iface,
                ring_addr: h.ring_addr,
                nodes,
            });
        }
        Ok(Self {
            path: path.into(),
            hosts,
        })
    }

    /// Checks that the hosts run exactly nodes 1..=`nodes`, and that several nodes share a
    /// host only over unicast.
    pub fn check_for(&self, nodes: usize, unicast: bool) -> Result<()> {
        let have: BTreeSet<NodeId> = self.hosts.iter().flat_map(|h| h.nodes.clone()).collect();
        let want: BTreeSet<NodeId> = (1..=nodes as NodeId).collect();
        if have != want {
            bail!(
                "the inventory {} runs nodes {:?}; the experiment has nodes {:?}",
                self.path.display(),
                have,
                want
            );
        }
        if !unicast {
            if let Some(h) = self.hosts.iter().find(|h| h.nodes.len() > 1) {
                bail!(
                    "host {:?} runs {} nodes: several nodes on one host need transport = \"unicast\" (they differ by port; a multicast group has one)",
                    h.name,
                    h.nodes.len()
                );
            }
        }
        Ok(())
    }

    /// Returns the index of the host that runs `node`.
    pub fn host_of(&self, node: NodeId) -> usize {
        self.hosts
            .iter()
            .position(|h| h.nodes.contains(&node))
            .expect("every node is on a host (check_for)")
    }

    /// Returns `node`'s ring address and UDP port (`base` plus its index on its host).
    pub fn endpoint(&self, node: NodeId, base: u16) -> (IpAddr, u16) {
        let h = &self.hosts[self.host_of(node)];
        let k = h
            .nodes
            .iter()
            .position(|&n| n == node)
            .expect("on its host");
        (h.ring_addr, base + k as u16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Inventory> {
        let f: InventoryFile = toml::from_str(text)?;
        Inventory::from_file(f, Path::new("hosts.toml"), Path::new("/etc/rl"))
    }

    #[test]
    fn defaults_apply_and_hosts_override_them() {
        let inv = parse(
            r#"
            [ssh]
            user = "ops"
            identity = "keys/id"
            [[host]]
            name = "a"
            address = "192.0.2.1"
            iface = "eth1"
            ring_addr = "10.9.0.1"
            nodes = [2, 1]
            [[host]]
            name = "b"
            address = "192.0.2.2"
            iface = "eth1"
            ring_addr = "10.9.0.2"
            nodes = [3]
            user = "root"
            port = 2222
            sudo = true
            "#,
        )
        .unwrap();
        assert_eq!(inv.hosts[0].user.as_deref(), Some("ops"));
        assert_eq!(inv.hosts[0].identity, Some("/etc/rl/keys/id".into()));
        assert_eq!(inv.hosts[0].nodes, vec![1, 2]);
        assert_eq!(inv.hosts[1].user.as_deref(), Some("root"));
        assert_eq!(inv.hosts[1].port, Some(2222));
        assert!(inv.hosts[1].sudo && !inv.hosts[0].sudo);
        assert_eq!(inv.hosts[0].strict_host_key_checking, "yes");
        assert_eq!(inv.host_of(3), 1);
        assert_eq!(inv.endpoint(2, 5405), ("10.9.0.1".parse().unwrap(), 5406));
        inv.check_for(3, true).unwrap();
        let e = inv.check_for(3, false).unwrap_err().to_string();
        assert!(e.contains("unicast"), "{e}");
        assert!(inv.check_for(4, true).is_err());
    }

    #[test]
    fn bad_inventories_are_refused_with_the_reason() {
        let host = |name: &str, nodes: &str| {
            format!(
                "[[host]]\nname = \"{name}\"\naddress = \"x\"\niface = \"e\"\nring_addr = \"10.0.0.1\"\nnodes = {nodes}\n"
            )
        };
        for (text, why) in [
            (host("A", "[1]"), "host name"),
            (host("a", "[1]") + &host("a", "[2]"), "twice"),
            (host("a", "[1]") + &host("b", "[1]"), "two hosts"),
            (host("a", "[]"), "no node"),
            (
                host("a", "[1]") + "strict_host_key_checking = \"no\"\n",
                "accept-new",
            ),
            (host("a", "[1]") + "dir = \"tmp\"\n", "absolute"),
            ("[ssh]\n".to_string(), "host"),
        ] {
            let e = format!("{:#}", parse(&text).unwrap_err());
            assert!(e.contains(why), "{text}: {e}");
        }
    }
}
