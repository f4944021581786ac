//! `ringlab cluster --capture`: the ring's datagrams on loopback into a pcapng file, by a
//! thread running [`ringlab_net::capture::run`] on `lo` beside the nodes; at the end the
//! file is rewritten with the records' faults as comments.

use anyhow::{Context, Result};
use ringlab_records::Record;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

type Outcome = Result<ringlab_net::capture::CaptureStats, ringlab_net::capture::CaptureError>;

/// A capture running on loopback.
pub(crate) struct LoopbackCapture {
    file: PathBuf,
    max_bytes: u64,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Outcome>>,
}

impl LoopbackCapture {
    /// Starts capturing UDP to or from `port` on `lo` into `file`.
    pub(crate) fn start(file: &Path, port: u16, max_bytes: u64) -> Result<Self> {
        if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (file.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || {
            ringlab_net::capture::run(
                &["lo".to_string()],
                &f,
                max_bytes,
                std::time::Duration::from_secs(24 * 3600),
                Some(port),
                s,
            )
        });
        Ok(Self {
            file: file.to_path_buf(),
            max_bytes,
            stop,
            thread: Some(thread),
        })
    }

    /// Stops the capture and adds `records`' faults to the file as comments.
    pub(crate) fn finish(mut self, records: &[Record]) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        let stats = self
            .thread
            .take()
            .context("the capture already stopped")?
            .join()
            .map_err(|_| anyhow::anyhow!("the capture thread panicked"))?
            .context("capturing on loopback (AF_PACKET needs root or CAP_NET_RAW)")?;
        ringlab_bench::capture::annotate(&self.file, records, stats.left_out, self.max_bytes)?;
        let note = if stats.left_out > 0 {
            format!(
                " (cap of {} bytes reached: {} frames left out)",
                self.max_bytes, stats.left_out
            )
        } else {
            String::new()
        };
        eprintln!(
            "ringlab cluster: captured {} frames into {}{}",
            stats.frames,
            self.file.display(),
            note
        );
        Ok(())
    }
}

impl Drop for LoopbackCapture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
