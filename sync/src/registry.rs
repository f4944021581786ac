//! The registry of services: the one place that lists them, one line each. A node's config
//! (`services = ["checkpoint"]`), the simulator (`--services checkpoint`), an experiment
//! (`services = [...]`) and the control socket (`svc NAME ...`) find a service here by its
//! name; nothing else names one.
//!
//! Adding a service: write its file in `sync/src/` implementing [`Service`] and
//! [`Plugin`], declare its module in `lib.rs`, and add `Entry::of::<ItsType>()` to
//! [`SERVICES`]. Its name and number must be unique (a test checks).

use crate::checkpoint::CheckpointService;
use crate::control::{Args, ControlError};
use crate::kml::KmlService;
use crate::msg::ServiceId;
use crate::resources::ResourcesService;
use crate::service::{Plugin, Service, ServiceConfig, ServiceConfigError, Workload};
use crate::store::StoreService;
use bytes::Bytes;
use ringlab_ring::NodeId;

/// Every service this build knows.
pub static SERVICES: &[Entry] = &[
    Entry::of::<CheckpointService>(),
    Entry::of::<ResourcesService>(),
    Entry::of::<StoreService>(),
    Entry::of::<KmlService>(),
    // One line per service.
];

/// No service of that name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown service {0:?} (known: {known})", known = names().join(", "))]
pub struct UnknownService(pub String);

/// Makes a configured service.
type Configure = fn(NodeId, &ServiceConfig) -> Result<Box<dyn Service>, ServiceConfigError>;

/// One service of the registry: its name, its number and its static side.
#[derive(Clone, Copy)]
pub struct Entry {
    /// Its name.
    pub name: &'static str,
    /// Its number.
    pub id: ServiceId,
    make: fn(NodeId) -> Box<dyn Service>,
    configure: Configure,
    parse_args: fn(&Args<'_>) -> Result<serde_json::Value, ControlError>,
    workload_op: fn(&mut dyn rand::RngCore, &Workload) -> Bytes,
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("id", &self.id)
            .finish()
    }
}

impl PartialEq for Entry {
    fn eq(&self, o: &Self) -> bool {
        self.id == o.id && self.name == o.name
    }
}

fn make<T: Plugin>(me: NodeId) -> Box<dyn Service> {
    Box::new(T::new(me))
}

fn configure<T: Plugin>(
    me: NodeId,
    cfg: &ServiceConfig,
) -> Result<Box<dyn Service>, ServiceConfigError> {
    Ok(Box::new(T::configure(me, cfg)?))
}

impl Entry {
    /// Returns the entry of service `T`.
    pub const fn of<T: Plugin>() -> Self {
        Self {
            name: T::NAME,
            id: T::ID,
            make: make::<T>,
            configure: configure::<T>,
            parse_args: T::parse_args,
            workload_op: T::workload_op,
        }
    }

    /// Returns the service of node `me`, empty.
    pub fn make(&self, me: NodeId) -> Box<dyn Service> {
        (self.make)(me)
    }

    /// Returns the service of node `me`, empty, configured by `cfg`.
    pub fn configure(
        &self,
        me: NodeId,
        cfg: &ServiceConfig,
    ) -> Result<Box<dyn Service>, ServiceConfigError> {
        (self.configure)(me, cfg)
    }

    /// Builds the service's control command from `svc NAME` arguments.
    pub fn parse_args(&self, args: &[String]) -> Result<serde_json::Value, ControlError> {
        (self.parse_args)(&Args::parse(format!("svc {}", self.name), args)?)
    }

    /// Returns one random operation of the service's workload.
    pub fn workload_op(&self, rng: &mut dyn rand::RngCore, w: &Workload) -> Bytes {
        (self.workload_op)(rng, w)
    }
}

/// Returns the names of every service.
pub fn names() -> Vec<&'static str> {
    SERVICES.iter().map(|e| e.name).collect()
}

/// Returns the service named `name`.
pub fn find(name: &str) -> Result<&'static Entry, UnknownService> {
    SERVICES
        .iter()
        .find(|e| e.name == name)
        .ok_or_else(|| UnknownService(name.to_string()))
}

/// Returns the services named in `names`, each once, in the order given.
pub fn resolve<S: AsRef<str>>(names: &[S]) -> Result<Vec<&'static Entry>, UnknownService> {
    let mut out: Vec<&'static Entry> = Vec::new();
    for n in names {
        let e = find(n.as_ref().trim())?;
        if !out.contains(&e) {
            out.push(e);
        }
    }
    Ok(out)
}

/// Returns the services of a comma list (`checkpoint,other`; empty or `none`: none).
pub fn parse_list(list: &str) -> Result<Vec<&'static Entry>, UnknownService> {
    let names: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty() && *n != "none")
        .collect();
    resolve(&names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_are_unique_and_instances_say_theirs() {
        for (i, a) in SERVICES.iter().enumerate() {
            for b in &SERVICES[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.id, b.id);
            }
            let s = a.make(1);
            assert_eq!((s.name(), s.id()), (a.name, a.id));
            assert_eq!(find(a.name), Ok(a));
        }
        assert!(parse_list("none").unwrap().is_empty());
        assert_eq!(
            parse_list("checkpoint, checkpoint").unwrap(),
            vec![find("checkpoint").unwrap()]
        );
        let e = parse_list("checkpoint,shred").unwrap_err().to_string();
        assert!(
            e.contains("unknown service \"shred\" (known: checkpoint"),
            "{e}"
        );
    }
}
