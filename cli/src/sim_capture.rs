//! `ringlab sim --capture`: where each seed's pcapng goes, and writing it.

use anyhow::{Context, Result};
use ringlab_records::Record;
use ringlab_sim::capture::Capture;
use std::path::{Path, PathBuf};

/// Where captures go: one file (one seed), or one file per seed in a directory.
pub(crate) enum Target {
    File(PathBuf),
    Dir(PathBuf),
}

impl Target {
    /// Returns the target for `path`: a file when one seed runs and `path` is not an
    /// existing directory, else a directory.
    pub(crate) fn new(path: &Path, seeds: u64) -> Self {
        if seeds == 1 && !path.is_dir() {
            Self::File(path.to_path_buf())
        } else {
            Self::Dir(path.to_path_buf())
        }
    }

    /// Writes seed `seed`'s capture with its fault records as comments.
    pub(crate) fn write(&self, seed: u64, capture: &Capture, records: &[Record]) -> Result<()> {
        let path = match self {
            Self::File(p) => p.clone(),
            Self::Dir(d) => {
                std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
                d.join(format!("seed-{seed}.pcapng"))
            }
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let file =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let header =
            format!("ringlab sim seed {seed}: virtual clock, one interface per directed link");
        let w = std::io::BufWriter::new(file);
        let n = ringlab_sim::pcap::write_sim_capture(w, &header, capture, records)
            .with_context(|| format!("writing {}", path.display()))?;
        if capture.truncated() > 0 {
            eprintln!(
                "ringlab: seed {seed}: capture cap of {} bytes reached, {} frames left out of {}",
                capture.max_bytes(),
                capture.truncated(),
                path.display()
            );
        }
        tracing::info!(seed, frames = n, path = %path.display(), "capture written");
        Ok(())
    }
}
