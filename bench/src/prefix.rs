//! The name prefix of a namespace run, and the lock that makes it this run's alone.
//!
//! Every namespace, link, nftables table and state directory a run makes carries its prefix
//! (netns-scripts/lib.sh), so two runs with different prefixes never touch each other's.
//! A prefix is 1 to 10 characters, `a-z` then `a-z0-9` (no `-`, so no prefix's names match
//! another's): the longest interface name is `<P>-p250` (a node's bridge port; the relay's
//! `<P>-q250`/`<P>-r250` likewise), which must fit Linux's 15 characters.
//!
//! By default a run's prefix is `rl<PID>` (its own process id, decimal: `rl48213`), with a
//! letter added (`rl48213a`) in the unlikely case that a run killed earlier with the same
//! PID left namespaces behind. A prefix is held for the whole run (a sweep: every
//! configuration) by an exclusive `flock` on `/run/ringlab-<P>.lock`, which names its holder
//! (PID, command, start). A second run given a held prefix is refused at once and tears
//! nothing down; a prefix whose namespaces or state directory exist while nobody holds it
//! (left by a run that was killed) is refused too, naming what was left and how to remove
//! it. topo.sh refuses a prefix held by a run other than its caller. The lock file is removed
//! when the run lets go of it; the kernel drops the lock itself when the holder dies.

use rustix::fs::{flock, FlockOperation};
use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the state directories and lock files of every prefix live.
pub const RUN_DIR: &str = "/run";

/// The longest prefix: `<P>-p250` fits Linux's 15-character interface names.
pub const MAX_LEN: usize = 10;

/// Why a prefix cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PrefixError {
    /// Not a valid prefix.
    #[error("prefix '{0}' must be 1-{MAX_LEN} characters, a-z then a-z0-9 (interface names such as '<prefix>-p250' must fit 15 characters)")]
    Invalid(String),
    /// Another run holds it.
    #[error("prefix '{prefix}' is in use by another ringlab run ({holder}; lock {}); refusing to start, nothing was touched. Give this run another --prefix, or leave out --prefix for a fresh one", lock.display())]
    Held {
        /// The prefix.
        prefix: String,
        /// Who holds it, as its lock file says.
        holder: String,
        /// The lock file.
        lock: PathBuf,
    },
    /// Nobody holds it, but namespaces or a state directory of it exist.
    #[error("prefix '{prefix}' is not held by any run, but {} exist (left by a run that was killed, or made by hand); refusing to touch them. Remove them with 'netns-scripts/topo.sh down --prefix {prefix}', or give this run another --prefix", left.join(", "))]
    Leftovers {
        /// The prefix.
        prefix: String,
        /// What exists.
        left: Vec<String>,
    },
    /// The lock file could not be opened, locked or written.
    #[error("locking prefix '{prefix}' ({}): {source}", path.display())]
    Io {
        /// The prefix.
        prefix: String,
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Checks a prefix's form (see the module docs).
pub fn validate(prefix: &str) -> Result<(), PrefixError> {
    let mut chars = prefix.chars();
    let ok = prefix.len() <= MAX_LEN
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(PrefixError::Invalid(prefix.into()))
    }
}

/// Returns the `n`-th default prefix of process `pid`: `rl<pid>`, then `rl<pid>a`, `rl<pid>b`...
pub fn default_candidate(pid: u32, n: u8) -> String {
    match n {
        0 => format!("rl{pid}"),
        n => format!("rl{pid}{}", char::from(b'a' + (n - 1) % 26)),
    }
}

/// Returns the lock file of `prefix` under `dir`.
pub fn lock_path(dir: &Path, prefix: &str) -> PathBuf {
    dir.join(format!("ringlab-{prefix}.lock"))
}

/// Returns the state directory of `prefix` (netns-scripts/lib.sh's `rl_state`).
pub fn state_dir(prefix: &str) -> PathBuf {
    Path::new(RUN_DIR).join(format!("ringlab-{prefix}"))
}

/// What of `prefix` exists on this machine: its namespaces (`<P>-n<i>`, `<P>-sw`) and its
/// state directory. A failure to list the namespaces is an error, never "nothing left".
pub fn leftovers(prefix: &str) -> Result<Vec<String>, PrefixError> {
    let listed = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .and_then(|o| {
            if o.status.success() {
                Ok(String::from_utf8_lossy(&o.stdout).into_owned())
            } else {
                Err(std::io::Error::other(format!(
                    "'ip netns list' failed: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                )))
            }
        })
        .map_err(|source| PrefixError::Io {
            prefix: prefix.into(),
            path: PathBuf::from("ip netns list"),
            source,
        })?;
    let mut left: Vec<String> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|ns| is_own_namespace(prefix, ns))
        .map(|ns| format!("namespace {ns}"))
        .collect();
    let st = state_dir(prefix);
    if st.exists() {
        left.push(format!("state directory {}", st.display()));
    }
    Ok(left)
}

/// Whether `ns` is a namespace topo.sh makes for `prefix`: `<P>-sw` or `<P>-n<digits>`.
pub fn is_own_namespace(prefix: &str, ns: &str) -> bool {
    match ns.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) {
        Some("sw") => true,
        Some(r) => r
            .strip_prefix('n')
            .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

/// A prefix held by this run: an exclusive `flock` on its lock file, let go (and the file
/// removed) on drop.
#[derive(Debug)]
pub struct PrefixLock {
    prefix: String,
    path: PathBuf,
    file: File,
}

impl PrefixLock {
    /// Takes `prefix` for this run under [`RUN_DIR`], or says who holds it; refuses a prefix
    /// whose namespaces or state directory exist (see the module docs).
    pub fn acquire(prefix: &str) -> Result<Self, PrefixError> {
        let lock = Self::acquire_in(Path::new(RUN_DIR), prefix)?;
        let left = leftovers(prefix)?;
        if !left.is_empty() {
            return Err(PrefixError::Leftovers {
                prefix: prefix.into(),
                left,
            });
        }
        Ok(lock)
    }

    /// Takes a fresh default prefix (`rl<PID>`, see the module docs).
    pub fn acquire_default() -> Result<Self, PrefixError> {
        let pid = std::process::id();
        let mut last = None;
        for n in 0..=26 {
            match Self::acquire(&default_candidate(pid, n)) {
                Ok(l) => return Ok(l),
                Err(e @ (PrefixError::Held { .. } | PrefixError::Leftovers { .. })) => {
                    last = Some(e)
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one candidate was tried"))
    }

    /// Takes `prefix`'s lock file in `dir` (the lock alone: no check of what exists).
    pub fn acquire_in(dir: &Path, prefix: &str) -> Result<Self, PrefixError> {
        validate(prefix)?;
        let path = lock_path(dir, prefix);
        let io = |source| PrefixError::Io {
            prefix: prefix.into(),
            path: lock_path(dir, prefix),
            source,
        };
        loop {
            let file = File::options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
                .open(&path)
                .map_err(io)?;
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => {
                    let holder = std::fs::read_to_string(&path)
                        .ok()
                        .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
                        .filter(|t| !t.is_empty())
                        .unwrap_or_else(|| "a process that is just starting".into());
                    return Err(PrefixError::Held {
                        prefix: prefix.into(),
                        holder,
                        lock: path,
                    });
                }
                Err(e) => return Err(io(e.into())),
            }
            // The previous holder removes the file before letting go: if it did so between
            // our open and our lock, we hold a file nobody else can find. Try again.
            let ours = file.metadata().map_err(io)?;
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.dev() == ours.dev() && m.ino() == ours.ino() => {}
                _ => continue,
            }
            let mut lock = Self {
                prefix: prefix.into(),
                path,
                file,
            };
            lock.write_holder().map_err(io)?;
            tracing::debug!(prefix, lock = %lock.path.display(), "prefix locked");
            return Ok(lock);
        }
    }

    fn write_holder(&mut self) -> std::io::Result<()> {
        let command: Vec<String> = std::env::args().collect();
        let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        self.file.set_len(0)?;
        writeln!(
            self.file,
            "pid={} started={} command={}",
            std::process::id(),
            started,
            command.join(" ")
        )?;
        self.file.flush()
    }

    /// The prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrefixLock {
    fn drop(&mut self) {
        // Removed while still held, so that nobody takes the old file after us (see
        // acquire_in); the lock goes with the descriptor.
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(lock = %self.path.display(), error = %e, "could not remove the lock file");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_checked_and_the_defaults_fit_interface_names() {
        for ok in ["a", "rlx", "rlci", "rly1", "abcdefghij"] {
            validate(ok).unwrap();
        }
        for bad in [
            "",
            "Rl",
            "1rl",
            "rl-x",
            "rl/x",
            "rl.x",
            "abcdefghijk",
            "rlé",
        ] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
        // The largest PID Linux hands out (pid_max at most 2^22) with the last letter.
        for (pid, n) in [(1, 0), (4_194_304, 0), (4_194_304, 26), (77, 3)] {
            let p = default_candidate(pid, n);
            validate(&p).unwrap();
            assert!(format!("{p}-p250").len() <= 15, "{p}");
        }
        assert_eq!(default_candidate(48213, 0), "rl48213");
        assert_eq!(default_candidate(48213, 1), "rl48213a");
        assert_eq!(default_candidate(48213, 26), "rl48213z");
    }

    #[test]
    fn only_the_prefix_s_own_namespaces_are_its_own() {
        for (ns, own) in [
            ("rly-sw", true),
            ("rly-n1", true),
            ("rly-n250", true),
            ("rly1-n1", false),
            ("rly-n", false),
            ("rly-nx", false),
            ("rly-n1x", false),
            ("rlyx-sw", false),
            ("rl-sw", false),
            ("rly", false),
        ] {
            assert_eq!(is_own_namespace("rly", ns), own, "{ns}");
        }
    }

    #[test]
    fn a_held_prefix_is_refused_naming_its_holder_and_free_again_once_let_go() {
        let dir = std::env::temp_dir().join(format!("ringlab-prefix-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let first = PrefixLock::acquire_in(&dir, "rlytest").unwrap();
        assert_eq!(first.prefix(), "rlytest");
        let text = std::fs::read_to_string(first.path()).unwrap();
        assert!(
            text.starts_with(&format!("pid={} ", std::process::id())),
            "{text}"
        );
        // flock locks belong to an open file: a second open in this process is refused too.
        let e = PrefixLock::acquire_in(&dir, "rlytest").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, PrefixError::Held { .. }), "{msg}");
        assert!(
            msg.contains(&format!("pid={}", std::process::id())) && msg.contains("rlytest"),
            "{msg}"
        );
        // Another prefix is another lock.
        let other = PrefixLock::acquire_in(&dir, "rlytest2").unwrap();
        let path = first.path().to_path_buf();
        drop(first);
        assert!(!path.exists(), "the lock file goes with the lock");
        let again = PrefixLock::acquire_in(&dir, "rlytest").unwrap();
        drop((again, other));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        assert!(matches!(
            PrefixLock::acquire_in(&dir, "../etc"),
            Err(PrefixError::Invalid(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
