# Sourced by the benchmark scripts: the load they run and how they read CPU time.
# Expects B (the parlor binary) and SESSIONS; IN_FLIGHT and WORDS are optional.

# `parlor loadtest` with the scripts' workload and the given target, printing its
# report's main lines and its own CPU time (it shares the cores it measures).
load() {
    local TIMEFORMAT='  load tester CPU %U s user + %S s system, over %R s'
    { time "$B" loadtest "$@" --sessions "$SESSIONS" --turns 2 --concurrency "${IN_FLIGHT:-300}" \
        --message-words "${WORDS:-0}" 2>&1 | grep -E "turns/s|chunks/s|ttft|errors"; } 2>&1
}

# CPU ticks (user + system) a process or thread has spent: ticks PID or ticks PID/task/TID.
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
