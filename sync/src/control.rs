//! The generic control path of services: `ringlab ctl SOCK svc NAME [VERB] key=value...` on a
//! client ([`Args`], handed to the service's [`Plugin::parse_args`](crate::Plugin::parse_args)),
//! and on the node the context a service's `control` sees ([`ControlContext`]), what it
//! returns ([`Control`]) and why it refuses ([`ControlError`]).
//!
//! Guarantees: an unknown or repeated key, a missing one and a value of the wrong kind are
//! refused with a message naming the argument; a service checks every bound on the node
//! again (a client may send raw JSON), and a refused command changes nothing.

use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// What a waiting operation costs beyond its bytes (queue slot, allocation), in the
/// `max_fill_bytes` account of the operations waiting to be sent.
pub const OP_OVERHEAD: u64 = 64;

/// Why a control command was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No service of that name in the registry.
    #[error(transparent)]
    Unknown(#[from] crate::registry::UnknownService),
    /// The service exists but this node does not run it.
    #[error("service {service:?} is not running on this node (services = {running:?})")]
    NotRunning {
        /// The service asked for.
        service: String,
        /// The services the node runs.
        running: Vec<&'static str>,
    },
    /// The command line or the request is not one of the service's commands.
    #[error("{0}")]
    BadCommand(String),
    /// An argument past its bound.
    #[error("{cmd}: {arg}={value} refused: {bound}")]
    BadArgument {
        /// The command (`svc NAME`).
        cmd: String,
        /// The argument.
        arg: &'static str,
        /// Its value as given (a long text by its length only).
        value: String,
        /// What it must be.
        bound: String,
    },
}

/// What a service's `control` sees of the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControlContext {
    /// Whether a sync runs.
    pub syncing: bool,
    /// What the operations waiting to be sent cost now (bytes plus [`OP_OVERHEAD`] each).
    pub queued: u64,
    /// The most they may cost (the node's `max_fill_bytes`).
    pub max_fill_bytes: u64,
}

impl ControlContext {
    /// Returns what more operations may cost.
    pub fn room(&self) -> u64 {
        self.max_fill_bytes.saturating_sub(self.queued)
    }
}

/// What a control command did: operations to submit through the ring (each one payload of
/// the service's `deliver_op`), and the reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Control {
    /// Operation payloads, submitted in order.
    pub ops: Vec<Vec<u8>>,
    /// The reply: a typed reply struct's JSON, with `"ok": true`.
    pub reply: serde_json::Value,
}

impl Control {
    /// Returns a command's outcome: `ops` and the reply `reply`.
    pub fn new(ops: Vec<Vec<u8>>, reply: &impl Serialize) -> Self {
        Self {
            ops,
            reply: serde_json::to_value(reply).expect("a reply serialises"),
        }
    }
}

/// The reply of a command that has nothing to report: `{"ok": true}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Always true.
    pub ok: bool,
}

impl Ack {
    /// Returns `{"ok": true}`.
    pub fn ok() -> Self {
        Self { ok: true }
    }
}

/// The `key=value` arguments of `svc NAME`, checked for form (a leading word without `=` is
/// the value of `op`; no key twice).
#[derive(Clone, Debug)]
pub struct Args<'a> {
    cmd: String,
    given: Vec<(&'a str, &'a str)>,
}

impl<'a> Args<'a> {
    /// Splits `args` of command `cmd` (`svc NAME`, for messages) into keys and values.
    pub fn parse(cmd: impl Into<String>, args: &'a [String]) -> Result<Self, ControlError> {
        let cmd = cmd.into();
        let mut given: Vec<(&str, &str)> = Vec::new();
        for (i, a) in args.iter().enumerate() {
            let (k, v) = match a.split_once('=') {
                Some(kv) => kv,
                None if i == 0 => ("op", a.as_str()),
                None => {
                    return Err(ControlError::BadCommand(format!(
                        "{cmd}: argument {a:?}: expected key=value"
                    )))
                }
            };
            if given.iter().any(|(g, _)| *g == k) {
                return Err(ControlError::BadCommand(format!("{cmd}: {k} given twice")));
            }
            given.push((k, v));
        }
        Ok(Self { cmd, given })
    }

    /// Returns the command, for messages.
    pub fn cmd(&self) -> &str {
        &self.cmd
    }

    /// Refuses any key but `takes`, naming it and what is taken.
    pub fn allow(&self, takes: &[&str]) -> Result<(), ControlError> {
        match self.given.iter().find(|(k, _)| !takes.contains(k)) {
            None => Ok(()),
            Some((k, _)) => Err(ControlError::BadCommand(format!(
                "{}: unknown argument {k:?}; it takes {}",
                self.cmd,
                takes.join(", ")
            ))),
        }
    }

    /// Returns the value of `k` as text (a JSON string is unquoted), if given.
    pub fn text(&self, k: &str) -> Option<String> {
        self.get(k)
            .map(|v| serde_json::from_str::<String>(v).unwrap_or_else(|_| v.to_string()))
    }

    /// Returns the value of `k` as text, or an error naming it.
    pub fn required(&self, k: &str) -> Result<String, ControlError> {
        self.text(k)
            .ok_or_else(|| ControlError::BadCommand(format!("{}: {k}=... missing", self.cmd)))
    }

    /// Returns the value of `k` as a whole number, if given.
    pub fn number<T: FromStr>(&self, k: &str) -> Result<Option<T>, ControlError> {
        self.get(k)
            .map(|v| {
                v.trim().parse().map_err(|_| {
                    ControlError::BadCommand(format!(
                        "{}: {k}={v}: expected a whole number",
                        self.cmd
                    ))
                })
            })
            .transpose()
    }

    fn get(&self, k: &str) -> Option<&'a str> {
        self.given.iter().find(|(g, _)| *g == k).map(|(_, v)| *v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_are_checked_for_form_and_named_in_errors() {
        let a = args(&["write", "name=\"c0\"", "size=10"]);
        let p = Args::parse("svc x", &a).unwrap();
        assert_eq!(p.text("op").as_deref(), Some("write"));
        assert_eq!(p.text("name").as_deref(), Some("c0"));
        assert_eq!(p.number::<usize>("size").unwrap(), Some(10));
        assert_eq!(p.number::<usize>("bytes").unwrap(), None);
        assert!(p.allow(&["op", "name", "size"]).is_ok());
        let e = p.allow(&["op", "name"]).unwrap_err().to_string();
        assert!(e.contains("unknown argument \"size\""), "{e}");
        let e = p.required("section").unwrap_err().to_string();
        assert_eq!(e, "svc x: section=... missing");
        let bad = args(&["size=ten"]);
        let e = Args::parse("svc x", &bad)
            .unwrap()
            .number::<usize>("size")
            .unwrap_err();
        assert!(e.to_string().contains("size=ten: expected a whole number"));
        let twice = args(&["a=1", "a=2"]);
        assert!(Args::parse("svc x", &twice)
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let bare = args(&["op=a", "b"]);
        assert!(Args::parse("svc x", &bare)
            .unwrap_err()
            .to_string()
            .contains("key=value"));
    }
}
