//! A node's config file (TOML).
//!
//! ```toml
//! node_id = 1
//! bind = "127.0.0.1"            # this node's unicast address (and multicast interface)
//! port = 5405
//! transport = "unicast"         # or "multicast"
//! mcast_group = "239.192.76.1"  # multicast transport only
//! events = "node-1.jsonl"       # where event records go (omit: none)
//! record_messages = true        # send/deliver records (off for throughput runs)
//! record_every = 1              # of those, only messages whose counter is a multiple of N
//! control = "node-1.sock"       # the control channel's Unix socket
//! state_dir = "state"           # stable storage: incarnation and highest ring seq
//! key_file = "cluster.key"      # optional shared key: every datagram carries an HMAC
//! recv_buffer = 4194304         # SO_RCVBUF asked for (the kernel's grant is reported)
//! send_buffer = 4194304
//! batched_io = true             # recvmmsg/sendmmsg (false: one system call per datagram)
//! services = ["checkpoint"]     # the sync engine with these services (the registry's names)
//! max_fill_bytes = 268435456    # most bytes of service operations waiting (svc NAME ...)
//!
//! [service_config.resources]    # each service's own section, parsed by the service
//! policy = "primary"
//! resources = [{ name = "web", home = 2 }]
//!
//! [[nodes]]
//! id = 1
//! addr = "127.0.0.1"
//! [[nodes]]
//! id = 2
//! addr = "127.0.0.2"
//!
//! [totem]                       # every ring knob, under corosync's names
//! token = 1000
//! variant = "classic"
//! ```

use ringlab_ring::{Config as RingConfig, NodeId};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// How multicasts travel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// One datagram to each node of the node list (corosync's "udpu").
    #[default]
    Unicast,
    /// UDP multicast to a group (TTL 1); tokens and other point-to-point messages by unicast.
    Multicast,
}

/// A member of the node list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Its node id.
    pub id: NodeId,
    /// Its unicast address.
    pub addr: IpAddr,
    /// Its UDP port, when it differs from the cluster's `port` (several nodes on one address).
    #[serde(default)]
    pub port: Option<u16>,
}

impl Peer {
    /// Returns the peer's socket address, with the cluster's port unless it has its own.
    pub fn socket_addr(&self, cluster_port: u16) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.addr, self.port.unwrap_or(cluster_port))
    }
}

/// Everything a node needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id (1 or more).
    pub node_id: NodeId,
    /// Its unicast address; also the interface multicast goes out of.
    pub bind: IpAddr,
    /// UDP port every node uses.
    #[serde(default = "default_port")]
    pub port: u16,
    /// Unicast or multicast.
    #[serde(default)]
    pub transport: Transport,
    /// Multicast group (multicast transport).
    #[serde(default = "default_group")]
    pub mcast_group: IpAddr,
    /// Every node of the cluster, this one included.
    pub nodes: Vec<Peer>,
    /// Where event records go.
    #[serde(default)]
    pub events: Option<PathBuf>,
    /// Whether send and deliver records are written.
    #[serde(default = "yes")]
    pub record_messages: bool,
    /// With `record_messages`: send and deliver records only of the messages whose
    /// per-incarnation counter is a multiple of this (1, the default: all). Every node keeps
    /// the same messages' records, so the checker's properties hold over that sample; the
    /// delivery counters and latency histogram of `stats` still count every message.
    #[serde(default = "one")]
    pub record_every: u64,
    /// The control channel's Unix socket.
    pub control: PathBuf,
    /// Stable storage for the incarnation counter and highest ring seq.
    pub state_dir: PathBuf,
    /// Shared cluster key (any bytes, at least 16); absent: no authentication.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// SO_RCVBUF asked for, bytes.
    #[serde(default)]
    pub recv_buffer: Option<usize>,
    /// SO_SNDBUF asked for, bytes.
    #[serde(default)]
    pub send_buffer: Option<usize>,
    /// Batched socket calls: recvmmsg for reads, sendmmsg for the unicast transport's fan-out.
    #[serde(default = "yes")]
    pub batched_io: bool,
    /// Services riding on the ring, synchronised after every configuration change, by their
    /// names in the registry (`ringlab_sync::registry`: "checkpoint", ...). Empty: none.
    #[serde(default)]
    pub services: Vec<String>,
    /// Most bytes of service operations that may wait to be sent: a `svc` command (the
    /// checkpoint service's `write` or `fill`) that would queue more is refused, naming this knob (each operation
    /// also counts 64 bytes for its queue slot). 1 MiB to 4 GiB; 256 MiB by default.
    #[serde(default = "default_max_fill_bytes")]
    pub max_fill_bytes: u64,
    /// Each service's own configuration section, by service name (`[service_config.NAME]`),
    /// handed to the service, which parses it into its own typed config; absent: defaults.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub service_config: std::collections::BTreeMap<String, toml::Value>,
    /// Ring knobs.
    #[serde(default)]
    pub totem: RingConfig,
}

/// The default of [`NodeConfig::max_fill_bytes`]: 256 MiB.
pub const DEFAULT_MAX_FILL_BYTES: u64 = 256 << 20;

fn default_max_fill_bytes() -> u64 {
    DEFAULT_MAX_FILL_BYTES
}

fn default_port() -> u16 {
    5405
}

fn default_group() -> IpAddr {
    IpAddr::from([239, 192, 76, 1])
}

fn one() -> u64 {
    1
}

fn yes() -> bool {
    true
}

/// A config that cannot be used, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// TOML that does not fit the schema (the message names the field).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A field with a value the node cannot run with.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

impl NodeConfig {
    /// Whether the send and deliver records of message `id` are written
    /// (`record_messages`, `record_every`).
    pub fn records_message(&self, id: &ringlab_ring::MsgId) -> bool {
        self.record_messages && id.counter.is_multiple_of(self.record_every)
    }

    /// Returns this node's own socket address (bind, and its port in the node list).
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.nodes
            .iter()
            .find(|p| p.id == self.node_id)
            .map_or(std::net::SocketAddr::new(self.bind, self.port), |p| {
                p.socket_addr(self.port)
            })
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let c: Self = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        c.validate()?;
        Ok(c)
    }

    /// Returns each service's section as JSON (what the services parse).
    pub fn service_sections(&self) -> std::collections::BTreeMap<String, serde_json::Value> {
        self.service_config
            .iter()
            .map(|(k, v)| {
                let j = serde_json::to_value(v).expect("a TOML value is JSON");
                (k.clone(), j)
            })
            .collect()
    }

    /// Checks the fields; returns an error naming the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.node_id == 0 {
            return Err(invalid("node_id", "must be 1 or more"));
        }
        if self.port == 0 {
            return Err(invalid("port", "must not be 0"));
        }
        if self.record_every == 0 {
            return Err(invalid(
                "record_every",
                "must be 1 or more (record_messages = false writes none)",
            ));
        }
        if self.nodes.is_empty() {
            return Err(invalid("nodes", "the node list is empty"));
        }
        let mut ids: Vec<NodeId> = self.nodes.iter().map(|p| p.id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) || ids.contains(&0) {
            return Err(invalid("nodes", "ids must be distinct and 1 or more"));
        }
        match self.nodes.iter().find(|p| p.id == self.node_id) {
            None => {
                return Err(invalid(
                    "nodes",
                    format!("node_id {} is not in the node list", self.node_id),
                ))
            }
            Some(p) if p.addr != self.bind => {
                return Err(invalid(
                    "bind",
                    format!(
                        "{} differs from this node's address in the node list ({})",
                        self.bind, p.addr
                    ),
                ))
            }
            Some(_) => {}
        }
        if self
            .nodes
            .iter()
            .any(|p| p.addr.is_ipv4() != self.bind.is_ipv4())
        {
            return Err(invalid("nodes", "mixes IPv4 and IPv6 addresses"));
        }
        if self.transport == Transport::Multicast {
            if !self.mcast_group.is_multicast() {
                return Err(invalid(
                    "mcast_group",
                    format!("{} is not a multicast address", self.mcast_group),
                ));
            }
            if self.mcast_group.is_ipv4() != self.bind.is_ipv4() {
                return Err(invalid("mcast_group", "must be of the same family as bind"));
            }
        }
        for (f, v) in [
            ("recv_buffer", self.recv_buffer),
            ("send_buffer", self.send_buffer),
        ] {
            if v.is_some_and(|v| !(4096..=1 << 30).contains(&v)) {
                return Err(invalid(f, "must be between 4 KiB and 1 GiB"));
            }
        }
        if !((1 << 20)..=(1 << 32)).contains(&self.max_fill_bytes) {
            return Err(invalid(
                "max_fill_bytes",
                format!(
                    "{} is not between 1 MiB (1048576) and 4 GiB (4294967296)",
                    self.max_fill_bytes
                ),
            ));
        }
        match ringlab_sync::registry::resolve(&self.services) {
            Err(e) => return Err(invalid("services", e.to_string())),
            Ok(services) => {
                let nodes: Vec<NodeId> = self.nodes.iter().map(|p| p.id).collect();
                if let Err(e) = ringlab_sync::ServiceApp::with_config(
                    self.node_id,
                    &services,
                    &nodes,
                    &self.service_sections(),
                ) {
                    return Err(invalid("service_config", e.to_string()));
                }
            }
        }
        self.totem
            .validate()
            .map_err(|e| invalid(format!("totem.{}", e.knob), e.reason))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> String {
        r#"
node_id = 1
bind = "127.0.0.1"
control = "/tmp/x.sock"
state_dir = "/tmp/state"
[[nodes]]
id = 1
addr = "127.0.0.1"
[[nodes]]
id = 2
addr = "127.0.0.2"
"#
        .to_string()
    }

    fn parse(s: &str) -> Result<NodeConfig, String> {
        let c: NodeConfig = toml::from_str(s).map_err(|e| e.to_string())?;
        c.validate().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn record_every_keeps_the_same_messages_on_every_node() {
        let id = |counter| ringlab_ring::MsgId {
            node: 2,
            inc: 1,
            counter,
        };
        let all = parse(&base()).unwrap();
        assert_eq!(all.record_every, 1);
        assert!((1..=5).all(|c| all.records_message(&id(c))));
        let tenth = parse(&format!("record_every = 10\n{}", base())).unwrap();
        let kept: Vec<u64> = (1..=35)
            .filter(|&c| tenth.records_message(&id(c)))
            .collect();
        assert_eq!(kept, vec![10, 20, 30]);
        let none = parse(&format!("record_messages = false\n{}", base())).unwrap();
        assert!(!none.records_message(&id(10)));
        let e = parse(&format!("record_every = 0\n{}", base())).unwrap_err();
        assert!(e.contains("record_every"), "{e}");
    }

    #[test]
    fn a_minimal_config_is_valid() {
        let c = parse(&base()).unwrap();
        assert_eq!(c.port, 5405);
        assert_eq!(c.transport, Transport::Unicast);
        assert_eq!(c.totem.token, 1000);
        assert_eq!(c.max_fill_bytes, 256 << 20);
    }

    #[test]
    fn each_service_gets_its_own_section() {
        let with = |section: &str| {
            format!(
                "services = [\"resources\"]\n{}\n[service_config.resources]\n{section}\n",
                base()
            )
        };
        let c = parse(&with(
            "two_node = true\nresources = [{ name = \"web\", home = 2 }]",
        ))
        .unwrap();
        assert_eq!(
            c.service_sections()["resources"]["resources"][0]["name"],
            "web"
        );
        let e = parse(&with("policy = \"raft\"")).unwrap_err();
        assert!(e.contains("service_config") && e.contains("raft"), "{e}");
    }

    #[test]
    fn errors_name_the_field() {
        let e = parse(&base().replace("node_id = 1", "node_id = 7")).unwrap_err();
        assert!(e.contains("invalid nodes"), "{e}");
        let e = parse(&format!("{}\n[totem]\nwindow_size = 0\n", base())).unwrap_err();
        assert!(e.contains("totem.window_size"), "{e}");
        let e = parse(&base().replace("bind = \"127.0.0.1\"", "bind = \"127.0.0.9\"")).unwrap_err();
        assert!(e.contains("invalid bind"), "{e}");
        let e = parse(&format!(
            "transport = \"multicast\"\nmcast_group = \"10.0.0.1\"\n{}",
            base()
        ))
        .unwrap_err();
        assert!(e.contains("mcast_group"), "{e}");
        let e = parse(&format!("colour = \"blue\"\n{}", base())).unwrap_err();
        assert!(e.contains("colour"), "{e}");
        let e = parse(&format!("max_fill_bytes = 0\n{}", base())).unwrap_err();
        assert!(e.contains("invalid max_fill_bytes"), "{e}");
        let e = parse(&format!("max_fill_bytes = 4294967297\n{}", base())).unwrap_err();
        assert!(e.contains("invalid max_fill_bytes"), "{e}");
    }
}
