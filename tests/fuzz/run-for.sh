#!/usr/bin/env bash
# A long fuzz run: each decoder's properties again and again, with fresh random seeds each
# time, for SECS seconds per decoder, in a release build. Prints one line per decoder: its
# time, the rounds run, the cases tried (properties x cases per property x rounds) and the
# failures (a failing case is saved in tests/fuzz/fuzz.proptest-regressions and printed).
#
#   tests/fuzz/run-for.sh [SECS per decoder, default 600] [decoder filter...]
#
# SWARMSTORE_FUZZ_CASES sets the cases per property per round (default 2000).
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-600}
shift || true
cases=${SWARMSTORE_FUZZ_CASES:-2000}
decoders=("$@")
if [ ${#decoders[@]} -eq 0 ]; then
  decoders=(frames:: block::block_request_body:: block::block_response_body::
    meta::meta_request_body:: meta::meta_response_body:: client::client_request_body::
    client::client_response_body:: gossip::gossip_load:: gossip::gossip_manager::
    gossip::gossip_decisions:: records:: config_files::)
fi
bin=$(cargo test --locked --release --test fuzz --no-run 2>&1 |
  sed -n 's/.*Executable tests\/fuzz\/main.rs (\(.*\))/\1/p' | tail -n 1)
[ -x "$bin" ] || { echo "cannot find the fuzz test binary" >&2; exit 1; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
total_failed=0
for d in "${decoders[@]}"; do
  start=$(date +%s)
  rounds=0 tried=0 failed=0
  while [ $(( $(date +%s) - start )) -lt "$secs" ]; do
    if SWARMSTORE_FUZZ_CASES=$cases "$bin" "$d" --skip write_corpus --test-threads 1 >"$log" 2>&1; then
      :
    else
      failed=$((failed + 1))
      cat "$log"
    fi
    passed=$(sed -n 's/^test result: .* \([0-9]*\) passed.*/\1/p' "$log" | tail -n 1)
    rounds=$((rounds + 1))
    tried=$((tried + ${passed:-0} * cases))
    [ "$failed" -eq 0 ] || break
  done
  echo "$d $(( $(date +%s) - start )) s, $rounds rounds, $tried cases, $failed failed"
  total_failed=$((total_failed + failed))
done
[ "$total_failed" -eq 0 ]
