//! The report as a user sees it: `ringlab report` of a committed result, opened in headless
//! Chromium (Debian's `chromium` package), must render without errors and show every
//! section, and must fetch nothing from the network.
//!
//! Without Chromium the test fails under CI (`CI=true`) and is skipped with a printed reason
//! elsewhere. `RINGLAB_CHROMIUM` names another binary.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Returns the Chromium binary: `RINGLAB_CHROMIUM`, or `chromium` / `chromium-browser` on
/// the PATH.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RINGLAB_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
        .find(|p| p.is_file())
}

fn headless(bin: &Path, profile: &Path) -> Command {
    let mut c = Command::new(bin);
    c.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--enable-logging=stderr",
        "--v=0",
        "--window-size=1280,3000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    c
}

#[test]
fn a_committed_result_renders_in_chromium_with_every_section() {
    let Some(bin) = chromium() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("chromium is not installed: CI must install Debian's chromium package to test the report");
        }
        eprintln!("skipped: no chromium on the PATH (install Debian's chromium package, or set RINGLAB_CHROMIUM)");
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = std::env::temp_dir().join(format!("ringlab-report-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let page = ringlab_bench::report::write(
        &[
            root.join("results/isolate-one"),
            root.join("results/split-heal"),
        ],
        &out,
    )
    .expect("the report is written");
    let html = std::fs::read_to_string(&page).unwrap();
    // Self-contained: nothing to fetch (the SVG namespace is a name, not a fetch).
    for bad in [
        "src=\"http",
        "href=\"http",
        "<script src",
        "<link ",
        "@import",
    ] {
        assert!(!html.contains(bad), "the page fetches something: {bad}");
    }

    let profile = out.join("profile");
    let dom = headless(&bin, &profile)
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    let stderr = String::from_utf8_lossy(&dom.stderr);
    assert!(dom.status.success(), "chromium failed: {stderr}");
    let dom = String::from_utf8_lossy(&dom.stdout);
    for s in ringlab_bench::report::SECTIONS {
        assert!(
            dom.contains(&format!(">{s}</h2>")),
            "section {s:?} missing from the rendered page"
        );
    }
    assert!(dom.contains("<svg"), "no plot in the rendered page");
    assert!(
        dom.contains("The checker found no violation in 10 repetitions."),
        "the verdict is missing"
    );
    // Errors in the page show as console messages or failed loads in Chromium's log.
    for line in stderr.lines() {
        assert!(
            !(line.contains("CONSOLE") || line.contains("net::ERR_")),
            "the page reported an error: {line}"
        );
    }

    let shot = out.join("report.png");
    let s = headless(&bin, &profile)
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("chromium runs");
    assert!(
        s.status.success(),
        "screenshot failed: {}",
        String::from_utf8_lossy(&s.stderr)
    );
    let png = std::fs::read(&shot).expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    std::fs::remove_dir_all(&out).unwrap();
}
