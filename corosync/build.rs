//! Sets `corosync_root` when the integration test can run here: corosync and libcpg.so.4
//! are installed and the build runs as root (the test makes a network namespace). Without
//! it the test is `#[ignore]`d.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(corosync_root)");
    let corosync = ["/usr/sbin/corosync", "/usr/bin/corosync"];
    let libcpg = [
        "/usr/lib/x86_64-linux-gnu/libcpg.so.4",
        "/usr/lib/aarch64-linux-gnu/libcpg.so.4",
        "/usr/lib64/libcpg.so.4",
        "/usr/lib/libcpg.so.4",
    ];
    for p in corosync.iter().chain(&libcpg) {
        if std::path::Path::new(p).exists() {
            println!("cargo::rerun-if-changed={p}");
        }
    }
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false);
    let have = |ps: &[&str]| ps.iter().any(|p| std::path::Path::new(p).exists());
    if root && have(&corosync) && have(&libcpg) {
        println!("cargo::rustc-cfg=corosync_root");
    }
}
