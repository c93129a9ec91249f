#!/usr/bin/env python3
"""Jitter on real nodes (issue 16, point 6): runs a capped, heterogeneous devnet under a steady
Zipf read workload, polls the first node's /api/decisions every 10 s, and prints how many
decisions were first seen in each minute and every pair of applied decisions on the same object
in opposite directions (a copy added to a node by a replicate or a move, later taken off it by a
drop or a move; a delegation ended). Exits 1 if there is any such pair or any decision in the
last third of the run. Every decision seen, with its state, goes to devnet-jitter.json.

    scripts/devnet-jitter.py [BINARY] [SECONDS]   (default: target/release/swarmstore, 660)

Environment: ZIPF (1.2), NODES (6), BANDWIDTH (1M), CAPACITIES (1x,3x,10x), PORT (18555).
The devnet's own output goes to devnet-jitter.out in the current directory. The dashboard
keeps the newest 512 decisions: a run with more between two polls undercounts.
"""
import collections
import json
import os
import subprocess
import sys
import time
import urllib.request

binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/swarmstore"
duration = int(sys.argv[2]) if len(sys.argv) > 2 else 660
port = os.environ.get("PORT", "18555")
args = [
    binary, "devnet",
    "--nodes", os.environ.get("NODES", "6"),
    "--bandwidth", os.environ.get("BANDWIDTH", "1M"),
    "--capacities", os.environ.get("CAPACITIES", "1x,3x,10x"),
    "--workload", "zipf:" + os.environ.get("ZIPF", "1.2"),
    "--files", "16", "--rate", "40", "--duration", f"{duration}s",
    "--dashboard", f"127.0.0.1:{port}",
]
with open("devnet-jitter.out", "w") as out:
    devnet = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    seen = {}  # (term, seq, kind, object, from, to) -> first seen (s) and the latest row
    start = time.time()
    while devnet.poll() is None:
        time.sleep(10)
        url = f"http://127.0.0.1:{port}/api/decisions?limit=512"
        try:
            with urllib.request.urlopen(url, timeout=5) as reply:
                rows = json.load(reply)["decisions"]
        except (OSError, ValueError):
            continue  # not up yet, or going down
        for r in rows:
            key = (r["term"], r["seq"], r["kind"], r["object"], r.get("from"), r.get("to"))
            first = seen.get(key, (time.time() - start, r))[0]
            seen[key] = (first, r)

with open("devnet-jitter.json", "w") as f:
    json.dump([dict(r, first_seen_s=round(t, 1)) for t, r in sorted(seen.values(), key=lambda v: v[0])], f, indent=1)
per_minute = collections.Counter(int(t // 60) for t, _ in seen.values())
minutes = range(duration // 60 + 1)
counts = [per_minute.get(m, 0) for m in minutes]
print("decisions first seen per minute:", counts)
print("by kind:", dict(collections.Counter(k[2] for k in seen)))
print("by state:", dict(collections.Counter(r["state"].split(":")[0] for _, r in seen.values())))
# Opposite directions, over decisions that were carried out (a skipped one changed nothing):
# a copy added to a node (replicate, or a move to it) and later taken off it (drop, or a move
# from it), or a delegation ended.
reversals = 0
added = {}
for (term, seq, kind, obj, frm, to), (t, r) in sorted(seen.items(), key=lambda kv: kv[1][0]):
    if r["state"] != "applied":
        continue
    undo = {
        "drop": ("add", obj, frm),
        "move": ("add", obj, frm),
        "end-delegation": ("delegate", obj, None),
    }.get(kind)
    if undo in added:
        reversals += 1
        print(f"  {kind} of {obj[:12]} at {t:.0f} s undoes the {undo[0]} at {added[undo]:.0f} s")
    if kind in ("replicate", "move"):
        added[("add", obj, to)] = t
    elif kind == "delegate":
        added[("delegate", obj, None)] = t
applied = sum(1 for _, r in seen.values() if r["state"] == "applied")
print(f"{len(seen)} decisions ({applied} applied), {reversals} applied in the opposite direction of an earlier one")
# Converged: the last third of the run has no decision at all.
tail = counts[len(counts) * 2 // 3:]
print(f"decisions in the last {len(tail)} minutes: {sum(tail)}")
sys.exit(0 if reversals == 0 and sum(tail) == 0 else 1)
