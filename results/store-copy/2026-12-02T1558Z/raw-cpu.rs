// The scratch program of profile.txt item 4: `rustc -O -o rawcpu raw-cpu.rs && ./rawcpu`.
// raw_flow of bench/src/bin/store_copy.rs, plus the process's CPU time (utime+stime, /proc/self/stat)
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
fn cpu_ticks() -> u64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}
fn main() {
    let size = 1400;
    let rx = UdpSocket::bind("127.0.0.2:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let to = rx.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let got = Arc::new(AtomicU64::new(0));
    let (s2, g2) = (stop.clone(), got.clone());
    let c0 = cpu_ticks();
    let receiver = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65_536];
        while !s2.load(Ordering::Relaxed) {
            if let Ok(n) = rx.recv(&mut buf) {
                g2.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    });
    let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
    let data = vec![7u8; size];
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_secs(1) && sent < 50_000_000 {
        if tx.send_to(&data, to).is_ok() {
            sent += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    receiver.join().unwrap();
    let cpu = (cpu_ticks() - c0) as f64 / 100.0;
    let bytes = got.load(Ordering::Relaxed) as f64;
    println!(
        "raw {:.1} MB/s, cpu {:.2} s in {:.2} s, {:.1} ms CPU per MiB",
        bytes / elapsed / 1e6,
        cpu,
        elapsed,
        cpu * 1e3 / (bytes / 1048576.0)
    );
}
