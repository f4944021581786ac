#!/usr/bin/env python3
"""The table of bench/store-copy.sh (medians over the rounds of each command) from OUT/runs.jsonl into OUT/table.md. Usage: bench/store-copy-table.py OUT"""
import json, sys, statistics as st
out = sys.argv[1]
runs = [json.loads(l) for l in open(f"{out}/runs.jsonl")]
groups = {}
for r in runs:
    k = (r["design"] if r["path"] == "unicast" else "-", r["path"], r["chunk_bytes"], r["window"],
         r["store_bytes"] // 2**20, r["killed_provider"] is not None, r["datagram_window"],
         r.get("resume", True))
    groups.setdefault(k, []).append(r)
rows = ["| design | path | chunk | window | datagram window | store MiB | provider killed | resume | rounds | copy MB/s (median, min–max) | raw MB/s (median) | copy/raw (median, min–max) | resume ms | resent bytes | resumes | aborts | held bytes req / prov (max) | RSS MiB req / prov (max) | fill s (median) | digests equal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
for k, rs in groups.items():
    c = [r["copy_mb_per_s"] for r in rs]
    q = [r["copy_over_raw"] for r in rs]
    raw = [(r["raw_before_mb_per_s"] + r["raw_after_mb_per_s"]) / 2 for r in rs]
    res = [r["resume_ms"] for r in rs if r["resume_ms"] is not None]
    fill = [r["fill_seconds"] for r in rs if "fill_seconds" in r]
    rows.append("| %s | %s | %d KiB | %d | %d | %d | %s | %s | %d | %.1f (%.1f–%.1f) | %.0f | %.2f (%.2f–%.2f) | %s | %d | %d | %d | %d / %d | %d / %d | %s | %s |" % (
        k[0], k[1], k[2] // 1024, k[3], k[6], k[4], "yes" if k[5] else "no", "yes" if k[7] else "no", len(rs),
        st.median(c), min(c), max(c), st.median(raw), st.median(q), min(q), max(q),
        ("%.0f" % st.median(res)) if res else "-", max(r["resent_bytes"] for r in rs),
        sum(r["resumes"] for r in rs), sum(r["aborts"] for r in rs),
        max(r["held_bytes_max_requester"] for r in rs), max(r["held_bytes_max_providers"] for r in rs),
        max(r["rss_kib_max_requester"] for r in rs) // 1024, max(r["rss_kib_max_providers"] for r in rs) // 1024,
        ("%.0f" % st.median(fill)) if fill else "-",
        all(r["digests_equal"] for r in rs)))
open(f"{out}/table.md", "w").write("\n".join(rows) + "\n")
print("\n".join(rows))
