#!/usr/bin/env bash
#
# aihub benchmark: ./build.sh bench (issue 6).  One run, loopback only,
# on this machine; results printed and written to t/bench/RESULTS.md.
#
#   BENCH_QUICK=1       smoke run (~3 min): c=32 only, 2 rounds of 3 s,
#                       100k requests over 10k keys, 50k drained events
#   BENCH_CONNS=16,64   connection counts of the closed-loop runs
#   BENCH_ROUNDS, BENCH_DUR, BENCH_WARM      rounds, seconds per run/warm-up
#   BENCH_ONLY=B0,B1,G  only these rows (names as in the table)
#   BENCH_MEM_REQUESTS, BENCH_MEM_KEYS, BENCH_DRAIN_EVENTS
#   BENCH_NO_PORTKEY=1, BENCH_NO_MEMORY=1, BENCH_NO_DRAIN=1,
#   BENCH_NO_PROFILE=1  skip those parts; BENCH_PROFILE=1 always profiles G
#   BENCH_NO_RESULTS=1  do not overwrite t/bench/RESULTS.md
#   BENCH_AUX_CPU=N     CPU of Redis, MariaDB and aihub-worker (default 0,
#                       with wrk and the stub; 1 puts them on the SUT core)
#   BENCH_LEDGER=normal MariaDB and aihub-worker at their normal priority
#                       (default: SCHED_IDLE, each run after the drain of
#                       the runs before it; bench.pl says why)
#   BENCH_DRAIN_BATCH=N aihub-worker run --batch N in the drain test
#   BENCH_DRAIN_INSERT=text  aihub-worker run --insert text in the drain test
#   BENCH_DRAIN_ONLY=1  only the worker drain test
#   BENCH_MARIADB_POOL  InnoDB buffer pool of the bench's MariaDB (1G)
#   BENCH_DRAIN_STALL=S, BENCH_DRAIN_CAP=S   the wait for the G runs' events
#                       fails when the usage stream has not shrunk for S
#                       seconds (30), or after S seconds in all (1800)
#   BENCH_HOLD=1        start everything, write t/bench/out/hold.env (ports,
#                       keys, pids) and wait: for perf/strace by hand
#   AIHUB_KEEP=1        keep the scratch directory (logs, configurations)
#
# Raw wrk output, logs and perf data go to t/bench/out/ (not committed).
# By hand: perl t/bench/ledger_ids.pl, MariaDB's CPU a row as the ledger
# outgrows a 64M buffer pool, with random and with time-ordered event ids.

set -euo pipefail

BENCH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$BENCH/../.." && pwd)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (MariaDB, nginx, taskset, perf)"
[ "$(nproc)" -ge 2 ] || die "needs 2 CPUs (SUT on CPU 1, load on CPU 0)"

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null \
        | grep -q '^install ok installed$'
}

# what the product needs (nginx-dev's source tree, hiredis, ...), then
# what the benchmark needs beyond it
"$REPO/build.sh" deps
missing=()
for p in wrk libnginx-mod-http-lua lua-cjson redis-tools mariadb-client \
         curl linux-perf util-linux; do
    installed "$p" || missing+=("$p")
done
# Node may come from elsewhere (NodeSource ships npm inside nodejs)
if [ -z "${BENCH_NO_PORTKEY:-}" ] && ! command -v npm >/dev/null; then
    missing+=(nodejs npm)
fi

if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    created_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi
    rc=0
    { DEBIAN_FRONTEND=noninteractive apt-get update -q \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
             --no-install-recommends "${missing[@]}"; } >&2 || rc=$?
    [ "$created_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "$rc" -eq 0 ] || die "apt-get install failed (exit $rc)"
fi

"$REPO/build.sh" build

# Portkey's gateway, exactly the locked version
if [ -z "${BENCH_NO_PORTKEY:-}" ]; then
    pk=$BENCH/portkey
    if [ ! -f "$pk/node_modules/@portkey-ai/gateway/build/start-server.js" ] \
       || [ "$pk/package-lock.json" -nt "$pk/node_modules/.package-lock.json" ]
    then
        say "npm ci (@portkey-ai/gateway)"
        (cd "$pk" && npm ci --no-audit --no-fund --ignore-scripts \
                        --loglevel=error) >&2 \
            || die "npm ci failed in t/bench/portkey"
    fi
fi

cd "$REPO"
exec perl "$BENCH/bench.pl" "$@"
