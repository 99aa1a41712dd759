#!/bin/bash
# Where `parlor serve`'s CPU goes at saturation, with the defaults a newcomer gets.
#
#   scripts/cpu-by-thread.sh [SESSIONS] [NAME=VALUE ...]
#
# Starts the mock model (50 ms to the first token, 10 ms per word) and `parlor
# serve` (in an empty directory, so no config.toml; NAME=VALUE pairs are added to
# its environment), warms up, then runs the same load against the model alone and
# through serve: SESSIONS sessions (default 4000) × 2 turns, 300 in flight
# (IN_FLIGHT=N for N; WORDS=N adds N words to each question, and so to each
# answer). Prints both load reports with the load tester's own CPU time, the CPU
# ticks serve and the mock spent on the second run, and serve's CPU by thread (from
# /proc/<pid>/task/*/stat). Linux only.
set -euo pipefail
B=${B:-target/release/parlor}
B=$(realpath "$B")
SESSIONS=${1:-4000}
shift || true
MOCK_PORT=${MOCK_PORT:-19300}
SERVE_PORT=${SERVE_PORT:-18302}
DIR=$(mktemp -d)
cleanup() {
    kill "${SERVE:-}" "${MOCK:-}" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

"$B" mock-llm --bind "127.0.0.1:$MOCK_PORT" --ttft-ms 50 --token-ms 10 >/dev/null 2>&1 &
MOCK=$!
(cd "$DIR" && exec env "$@" PARLOR_HTTP__BIND="127.0.0.1:$SERVE_PORT" \
    PARLOR_LLM__BASE_URL="http://127.0.0.1:$MOCK_PORT/v1" "$B" serve >"$DIR/serve.log" 2>&1) &
SERVE=$!
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$SERVE_PORT/readyz" >/dev/null && break
    sleep 0.1
done

# shellcheck source=load.sh
source "$(dirname "$0")/load.sh"
threads() { for task in /proc/"$1"/task/*; do echo "$(tr ' ' _ <"$task/comm")/${task##*/} $(ticks "$1/task/${task##*/}")"; done | sort; }

"$B" loadtest --mode ws --url "ws://127.0.0.1:$SERVE_PORT/ws" --sessions 600 --turns 2 --concurrency 300 >/dev/null 2>&1
echo "== the model alone"
load --mode openai --url "http://127.0.0.1:$MOCK_PORT/v1"
threads "$SERVE" >"$DIR/before"
serve_before=$(ticks "$SERVE")
mock_before=$(ticks "$MOCK")
echo "== through parlor serve"
load --mode ws --url "ws://127.0.0.1:$SERVE_PORT/ws"
threads "$SERVE" >"$DIR/after"
serve_ticks=$(($(ticks "$SERVE") - serve_before))
mock_ticks=$(($(ticks "$MOCK") - mock_before))
echo "== CPU ticks: serve $serve_ticks, mock $mock_ticks"
echo "== serve's CPU by thread"
join "$DIR/before" "$DIR/after" | awk -v total="$serve_ticks" \
    '{ spent = $3 - $2; if (spent > 0) printf "%-28s %6d %5.1f %%\n", $1, spent, 100 * spent / total }' |
    sort -k2 -nr
