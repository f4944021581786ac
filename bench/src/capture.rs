//! Packet captures of a namespace run (`capture = true`, `ringlab run --capture`): for each
//! repetition, a `ringlab capture` process in the switch namespace `<P>-sw` records every
//! frame that crosses its bridges (AF_PACKET through pnet, [`ringlab_net::capture`]; one
//! pcapng interface per bridge) into `records/rep-N/capture.pcapng`, capped at
//! `capture_max_bytes`.
//!
//! At the end of the repetition the process is stopped (SIGTERM, by its PID) and the file
//! is rewritten once with the run's fault records as comments: each fault on the first
//! frame at or after its instant, and all of them in the section header's comment (the
//! records' monotonic instants are mapped onto the capture's realtime stamps with the
//! offset the capture wrote beside the file). Whether the cap was reached is said in the
//! repetition's summary ([`CaptureSummary`]) and in the file's header comment.
//!
//! A capture that cannot start or finish is a warning, never a failed run; the process is
//! stopped on every exit path ([`Drop`]), and topo.sh's teardown stops whatever runs in the
//! prefix's namespaces as well.

use anyhow::{bail, Context, Result};
use ringlab_records::Record;
use ringlab_sim::pcap::{annotate_file, fault_notes, FaultNote};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The file each repetition's capture is written to, in its records directory.
pub const CAPTURE_FILE: &str = "capture.pcapng";

/// What a repetition's capture holds, in its summary.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CaptureSummary {
    /// The file, relative to the run's directory.
    pub file: String,
    /// Frames written.
    pub frames: u64,
    /// Their bytes.
    pub bytes: u64,
    /// The cap, bytes.
    pub max_bytes: u64,
    /// Whether the cap was reached (later frames are not in the file).
    pub cap_reached: bool,
    /// Frames left out once it was.
    pub left_out: u64,
}

/// What `ringlab capture` prints on stdout when it stops (one JSON line).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct CaptureReport {
    /// Frames written.
    pub frames: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Frames left out (cap reached).
    pub left_out: u64,
}

/// A running capture of one repetition.
pub struct RepCapture {
    child: Option<Child>,
    file: PathBuf,
    max_bytes: u64,
}

/// Returns the bridges of namespace `sw`.
fn bridges(sw: &str) -> Result<Vec<String>> {
    let out = Command::new("ip")
        .args(["-n", sw, "-br", "link", "show", "type", "bridge"])
        .output()
        .context("running ip link show")?;
    if !out.status.success() {
        bail!(
            "ip -n {sw} link show: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .collect())
}

impl RepCapture {
    /// Starts capturing the bridges of `<prefix>-sw` into `dir/capture.pcapng` with
    /// `binary capture`, for at most `max_seconds`.
    pub fn start(
        binary: &Path,
        prefix: &str,
        dir: &Path,
        max_bytes: u64,
        max_seconds: u64,
    ) -> Result<Self> {
        let sw = format!("{prefix}-sw");
        let ifaces = bridges(&sw)?;
        if ifaces.is_empty() {
            bail!("no bridge in {sw}");
        }
        let file = dir.join(CAPTURE_FILE);
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &sw])
            .arg(binary)
            .arg("capture")
            .arg("--out")
            .arg(&file)
            .args(["--max-bytes", &max_bytes.to_string()])
            .args(["--max-seconds", &max_seconds.to_string()]);
        for i in &ifaces {
            c.args(["--iface", i]);
        }
        use std::os::unix::process::CommandExt;
        let child = c
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting ringlab capture")?;
        tracing::info!(pid = child.id(), bridges = ?ifaces, file = %file.display(), "capture started");
        Ok(Self {
            child: Some(child),
            file,
            max_bytes,
        })
    }

    /// Stops the capture and rewrites its file with `records`' faults as comments; returns
    /// what it holds. `run_dir` is the run's directory (the summary names the file
    /// relative to it).
    pub fn finish(mut self, records: &[Record], run_dir: &Path) -> Result<CaptureSummary> {
        let child = self.child.take().context("the capture already stopped")?;
        let out = stop(child)?;
        let report: CaptureReport = String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok())
            .with_context(|| {
                format!(
                    "ringlab capture printed no report: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            })?;
        let cap_reached = report.left_out > 0;
        annotate(&self.file, records, report.left_out, self.max_bytes)?;
        Ok(CaptureSummary {
            file: self
                .file
                .strip_prefix(run_dir)
                .unwrap_or(&self.file)
                .display()
                .to_string(),
            frames: report.frames,
            bytes: report.bytes,
            max_bytes: self.max_bytes,
            cap_reached,
            left_out: report.left_out,
        })
    }
}

/// Rewrites the capture `file` (written by [`ringlab_net::capture::run`], with its clock
/// offset beside it) with `records`' faults as comments, and says in its header comment
/// when the cap was reached (`left_out` frames past `max_bytes`); removes the offset file.
pub fn annotate(file: &Path, records: &[Record], left_out: u64, max_bytes: u64) -> Result<()> {
    let offset_file = ringlab_net::capture::offset_path(file);
    let offset: i128 = std::fs::read_to_string(&offset_file)
        .with_context(|| format!("reading {}", offset_file.display()))?
        .trim()
        .parse()
        .context("the capture's clock offset")?;
    let _ = std::fs::remove_file(&offset_file);
    let faults: Vec<FaultNote> = fault_notes(records)
        .into_iter()
        .map(|f| FaultNote {
            at_ns: (f.at_ns as i128 + offset).max(0) as u64,
            text: f.text,
        })
        .collect();
    let note = if left_out > 0 {
        format!("capture cap of {max_bytes} bytes reached: {left_out} later frames left out")
    } else {
        String::new()
    };
    annotate_file(file, &faults, &note)
        .with_context(|| format!("adding the faults to {}", file.display()))?;
    Ok(())
}

/// Sends SIGTERM to `child` (by its PID) and waits for it.
fn stop(child: Child) -> Result<std::process::Output> {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    child
        .wait_with_output()
        .context("waiting for ringlab capture")
}

impl Drop for RepCapture {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            let _ = stop(child);
        }
    }
}

/// Starts a repetition's capture when the experiment asks for one; a capture that cannot
/// start is a warning (the run goes on without it).
pub fn start_for_rep(
    capture: bool,
    binary: &Path,
    prefix: &str,
    dir: &Path,
    max_bytes: u64,
    max_seconds: u64,
) -> Option<RepCapture> {
    if !capture {
        return None;
    }
    match RepCapture::start(binary, prefix, dir, max_bytes, max_seconds) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("ringlab run: no capture of this repetition: {e:#}");
            None
        }
    }
}

/// Finishes a repetition's capture, if any; a failure is a warning.
pub fn finish_for_rep(
    c: Option<RepCapture>,
    records: &[Record],
    run_dir: &Path,
) -> Option<CaptureSummary> {
    let c = c?;
    match c.finish(records, run_dir) {
        Ok(s) => {
            if s.cap_reached {
                eprintln!(
                    "ringlab run: {}: capture cap of {} bytes reached, {} frames left out",
                    s.file, s.max_bytes, s.left_out
                );
            }
            Some(s)
        }
        Err(e) => {
            eprintln!("ringlab run: the capture of this repetition: {e:#}");
            None
        }
    }
}
