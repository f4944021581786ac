//! Benchmarks (in `benches/` and `src/bin/`), the experiment runner and the comparison of
//! results.
//!
//! - [`experiment`]: the experiment file (TOML in experiments/);
//! - [`fault`]: the actions of its fault schedule, typed and checked at parse time;
//! - [`runner`]: `ringlab run`, in network namespaces made by netns-scripts/;
//! - [`prefix`]: a run's name prefix (unique by default) and the lock that makes it its own;
//! - [`sweep`]: `ringlab sweep`'s grid of knob values;
//! - [`analysis`]: recovery phases, throughput and latency from a run's event records;
//! - [`failover`]: resource failover phases and double ownership from the same records;
//! - [`store`]: the store's full copies in a run: the fill, the half-way trigger, the raw
//!   single-flow baseline, the copy's figures;
//! - [`kml`]: the kml service's end-of-repetition check (real directories against trees)
//!   and its reintegration figures;
//! - [`summary`]: the result model, summary.json and runs.csv, and its aggregation;
//! - [`compare`]: `ringlab compare`, tables and SVG plots across runs;
//! - [`plot`]: the SVG plots `compare` and `report` draw, one colour per configuration;
//! - [`report`]: `ringlab report`, one self-contained HTML page of one or more runs.
#![warn(missing_docs)]
// The experiment runner drives real processes, namespaces and clocks (see clippy.toml).
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

pub mod analysis;
pub mod capture;
pub mod compare;
pub mod experiment;
pub mod failover;
pub mod fault;
pub mod hosts;
pub mod kml;
pub mod lab;
pub mod peer;
pub mod plot;
pub mod prefix;
pub mod raw;
pub mod report;
pub mod runner;
pub mod store;
pub mod summary;
pub mod sweep;
pub mod throughput;
