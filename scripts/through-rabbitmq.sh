#!/bin/bash
# `parlor gateway` + `parlor worker` through RabbitMQ, with the defaults a newcomer
# gets, against the model alone.
#
#   scripts/through-rabbitmq.sh TTFT_MS TOKEN_MS [SESSIONS]
#
# Needs RabbitMQ on 127.0.0.1:5672 (guest/guest) and rabbitmqctl; uses queues of
# its own (`parlor-bench…`) and deletes them. Starts the mock model (TTFT_MS to the
# first token, TOKEN_MS per word), a worker and a gateway (each in an empty
# directory), warms up, then runs SESSIONS sessions (default 3000) × 2 turns, 300 in
# flight (IN_FLIGHT=N for N), against the model alone and through the gateway
# (WORDS=N adds N words to each question, and so to each answer). Prints both load
# reports with the load tester's own CPU time, and the CPU ticks each process (and
# RabbitMQ) spent on the second run.
# Linux only.
set -euo pipefail
B=${B:-target/release/parlor}
B=$(realpath "$B")
TTFT_MS=$1
TOKEN_MS=$2
SESSIONS=${3:-3000}
# One fixed name: a rerun reuses its exchange (`parlor-bench.cancel`), and its
# queues are deleted after each run.
QUEUE=parlor-bench
DIR=$(mktemp -d)
export PARLOR_BROKER__URL='amqp://guest:guest@127.0.0.1:5672/%2f' PARLOR_BROKER__QUESTION_QUEUE=$QUEUE
cleanup() {
    kill "${GATEWAY:-}" "${WORKER:-}" "${MOCK:-}" 2>/dev/null || true
    wait 2>/dev/null || true
    for queue in "$QUEUE" "$QUEUE.dead" "$QUEUE.orphans"; do
        rabbitmqctl -q delete_queue "$queue" >/dev/null 2>&1 || true
    done
    rm -rf "$DIR"
}
trap cleanup EXIT

"$B" mock-llm --bind 127.0.0.1:19301 --ttft-ms "$TTFT_MS" --token-ms "$TOKEN_MS" >/dev/null 2>&1 &
MOCK=$!
(cd "$DIR" && PARLOR_WORKER__BIND=127.0.0.1:18311 PARLOR_LLM__BASE_URL=http://127.0.0.1:19301/v1 \
    exec "$B" worker >"$DIR/worker.log" 2>&1) &
WORKER=$!
(cd "$DIR" && PARLOR_HTTP__BIND=127.0.0.1:18310 exec "$B" gateway >"$DIR/gateway.log" 2>&1) &
GATEWAY=$!
for _ in $(seq 100); do
    curl -sf http://127.0.0.1:18310/readyz >/dev/null && curl -sf http://127.0.0.1:18311/readyz >/dev/null && break
    sleep 0.1
done

# shellcheck source=load.sh
source "$(dirname "$0")/load.sh"

"$B" loadtest --mode ws --url ws://127.0.0.1:18310/ws --sessions 300 --turns 2 --concurrency 300 >/dev/null 2>&1
echo "== the model alone"
load --mode openai --url http://127.0.0.1:19301/v1
RABBITMQ=$(pgrep -f beam.smp | head -1)
start=($(ticks "$GATEWAY") $(ticks "$WORKER") $(ticks "$RABBITMQ") $(ticks "$MOCK"))
echo "== through parlor gateway + parlor worker"
load --mode ws --url ws://127.0.0.1:18310/ws
echo "== CPU ticks: gateway $(($(ticks "$GATEWAY") - start[0])), worker $(($(ticks "$WORKER") - start[1])), RabbitMQ $(($(ticks "$RABBITMQ") - start[2])), mock $(($(ticks "$MOCK") - start[3]))"
