#!/usr/bin/env bash
# The planner's headline numbers over a grid of simulator runs: one line per
# (Zipf, seed), taken from the `swarmstore` column of `swarmstore sim`.
#
#   scripts/sim-matrix.sh [BINARY]   (default: $CARGO_TARGET_DIR or target, /release/swarmstore)
#
# Environment: NODES (1000), ZIPFS ("0.8 1.0 1.2 1.5"), SEEDS ("1 2 3 4 5").
# Runs one simulation at a time (each runs every strategy, ~7 s in release).
set -euo pipefail

bin=${1:-${CARGO_TARGET_DIR:-target}/release/swarmstore}
nodes=${NODES:-1000}
zipfs=${ZIPFS:-0.8 1.0 1.2 1.5}
seeds=${SEEDS:-1 2 3 4 5}

printf '%-5s %-4s %5s %12s %8s %8s %8s %5s %8s\n' \
    zipf seed over rounds_flash req_f+5 sto_join moved rev plan_ms
for z in $zipfs; do
    for s in $seeds; do
        # Every row read here has a target: the value after it is the
        # swarmstore column.
        "$bin" sim --nodes "$nodes" --zipf "$z" --seed "$s" | awk -v z="$z" -v s="$s" '
            function cell(line, label,   f) {
                split(substr(line, length(label) + 1), f, " ")
                return f[2]
            }
            index($0, "targets pushed over capacity") == 1      { over = cell($0, "targets pushed over capacity") }
            index($0, "rounds to req<=1.25 after flash") == 1   { fl = cell($0, "rounds to req<=1.25 after flash") }
            index($0, "req peak/mean at flash+5") == 1          { f5 = cell($0, "req peak/mean at flash+5") }
            index($0, "sto peak/mean after join (settled)") == 1 { sj = cell($0, "sto peak/mean after join (settled)") }
            index($0, "bytes moved, measured (% stored)") == 1  { mv = cell($0, "bytes moved, measured (% stored)") }
            index($0, "reversals within hold") == 1             { rv = cell($0, "reversals within hold") }
            index($0, "plan() ms median / max") == 1            { pm = cell($0, "plan() ms median / max") }
            END { printf "%-5s %-4s %5s %12s %8s %8s %8s %5s %8s\n", z, s, over, fl, f5, sj, mv, rv, pm }'
    done
done
