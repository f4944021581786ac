//! What the corosync node's namespace tests share.

use std::path::{Path, PathBuf};

/// Reads a PID file.
pub(crate) fn read_pid(p: &Path) -> Option<u32> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Returns whether `pid` runs (a zombie counts as gone).
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

/// Returns the `ringlab` binary beside the test's (target/<profile>/deps/TEST-HASH ->
/// target/<profile>/ringlab), which must have been built.
pub(crate) fn ringlab_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("ringlab");
    assert!(
        bin.exists(),
        "{} is missing: build it first (cargo build -p ringlab)",
        bin.display()
    );
    bin
}
