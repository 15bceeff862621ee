#!/usr/bin/env bash
#
# aihub: one entry point to install, build, test and demo.
#
#   ./build.sh deps     install the missing Debian 12 packages (root)
#   ./build.sh build    the nginx module and aihub-worker, into build/
#   ./build.sh test     deps + build + the whole test suite (prove)
#   ./build.sh demo     deps + build + a local stack in state/, on :8080
#   ./build.sh stop     stop the demo stack
#   ./build.sh bench    benchmarks (t/bench/run.sh)
#   ./build.sh docs     the developer API reference: lint docs/openapi.yaml,
#                       write build/docs/ (index.html, openapi.json/.yaml)
#   ./build.sh test-asan
#                       the suite against nginx built with ASan+UBSan
#   ./build.sh fuzz [SECONDS [TARGET...]]
#                       the libFuzzer targets (or only those named),
#                       SECONDS each (default 30)
#   ./build.sh deb      build + the Debian packages libnginx-mod-http-aihub
#                       and aihub-worker into build/deb/
#
# Environment:
#   NGINX_SRC=/path/to/nginx-x.y.z   build the module against that source
#                                    tree (--with-compat) instead of
#                                    Debian's nginx-dev
#   AIHUB_CC_OPT                     module CFLAGS (default
#                                    "-O2 -g -Wall -Wextra -Werror")
#   AIHUB_TEST_JOBS                  parallel test files (default 2)
#   AIHUB_FUZZ_SECONDS               seconds per fuzz target in the whole
#                                    suite (default 30; 0 skips fuzzing)
#   AIHUB_DEMO_PORT, AIHUB_DEMO_REDIS_PORT, AIHUB_DEMO_MOCK_PORT
#                                    demo ports (8080, 16379, 18080)
#   AIHUB_STATE                      the demo's directory (default state/)
#   OPENROUTER_API_KEY, GEMINI_API_KEY
#                                    demo with real providers, not the mock

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=$REPO/build
STATE=${AIHUB_STATE:-$REPO/state}
NGINX_BIN=/usr/sbin/nginx
DEBIAN_NGINX_SRC=/usr/share/nginx/src
WORKER=$BUILD/bin/aihub-worker
JOBS=$(nproc 2>/dev/null || echo 2)

SHOWN=${STATE#"$PWD"/}        # the state directory, as messages show it

DEMO_PORT=${AIHUB_DEMO_PORT:-8080}
DEMO_REDIS_PORT=${AIHUB_DEMO_REDIS_PORT:-16379}
DEMO_MOCK_PORT=${AIHUB_DEMO_MOCK_PORT:-18080}
DEMO_MOCK_KEY='mock-provider-secret'

PACKAGES=(nginx-core nginx-dev libhiredis-dev libcjson-dev zlib1g-dev libzstd-dev
          libcurl4-openssl-dev libmariadb-dev libssl-dev mariadb-server
          redis-server perl wrk curl ca-certificates gcc make pkg-config zstd
          iproute2 chromium libjson-xs-perl)


say() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'build.sh: warning: %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }


usage() {
    sed -n '3,18p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}


# --- deps --------------------------------------------------------------------

installed() {
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null \
        | grep -q '^install ok installed$'
}


cmd_deps() {
    local missing=() p created_policy=0 rc=0

    for p in "${PACKAGES[@]}"; do
        installed "$p" || missing+=("$p")
    done

    if ! command -v node >/dev/null; then
        missing+=(nodejs npm)
    fi

    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi

    if [ "$(id -u)" -ne 0 ]; then
        die "missing Debian packages: ${missing[*]}
run as root: sudo ./build.sh deps
(or: apt-get install ${missing[*]})"
    fi

    say "installing ${missing[*]}"

    # nothing apt installs may start a service: the tests and the demo
    # start their own
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
    fi

    {
        DEBIAN_FRONTEND=noninteractive apt-get update -q \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
               --no-install-recommends "${missing[@]}"
    } || rc=$?

    if [ "$created_policy" = 1 ]; then
        rm -f /usr/sbin/policy-rc.d
    fi

    [ "$rc" -eq 0 ] || die "apt-get failed (exit $rc)"
}


# --- build -------------------------------------------------------------------

# a private copy of the nginx source tree: configure writes into it, and
# /usr/share/nginx/src must stay untouched

prepare_nginx_src() {
    local src=$1 copy=$2 id

    id="$src $(stat -c %Y "$src/src/core/nginx.h")"

    if [ -f "$copy/.aihub-source" ] \
       && [ "$(cat "$copy/.aihub-source")" = "$id" ]
    then
        return 0
    fi

    say "copying $src to ${copy#"$REPO"/}"
    rm -rf "$copy"
    mkdir -p "$copy"
    cp -a "$src/." "$copy/"
    echo "$id" > "$copy/.aihub-source"
}


build_module() {
    local src copy cc_opt stamp flags=()

    src=${NGINX_SRC:-$DEBIAN_NGINX_SRC}
    if [ ! -x "$src/configure" ] || [ ! -f "$src/src/core/nginx.h" ]; then
        die "no nginx source tree at $src (expected configure and src/)"
    fi
    src=$(cd "$src" && pwd)

    if [ -z "${NGINX_SRC:-}" ]; then
        copy=$BUILD/nginx-src
        # shellcheck disable=SC1091
        source "$src/conf_flags"
        flags=("${NGX_CONF_FLAGS[@]}")
    else
        copy=$BUILD/nginx-src-custom
        flags=(--with-compat)
    fi

    prepare_nginx_src "$src" "$copy"

    cc_opt=${AIHUB_CC_OPT:--O2 -g -Wall -Wextra -Werror}

    # configure again when the addon's config (its list of sources) or the
    # flags change; otherwise only make runs
    stamp=$({ sha256sum < "$REPO/config"
              printf '%s\n' "${flags[@]}" "$cc_opt" "$REPO"; } | sha256sum)

    if [ ! -f "$copy/objs/Makefile" ] \
       || [ "$(cat "$copy/.aihub-configure" 2>/dev/null)" != "$stamp" ]
    then
        say "configuring nginx $(nginx_version "$src") with the aihub module"
        rm -f "$copy/.aihub-configure"

        if ! (cd "$copy" && ./configure "${flags[@]}" \
                  --with-cc-opt="$cc_opt" \
                  --add-dynamic-module="$REPO") \
                > "$BUILD/configure.log" 2>&1
        then
            tail -n 25 "$BUILD/configure.log" >&2
            die "nginx configure failed (full log: build/configure.log)"
        fi

        echo "$stamp" > "$copy/.aihub-configure"
    fi

    say "building ngx_http_aihub_module.so"

    if ! (cd "$copy" && make -j"$JOBS" -f objs/Makefile modules) \
            > "$BUILD/module.log" 2>&1
    then
        # the diagnostics, without the long compiler command lines
        grep -v -E '^[[:space:]]*(cc|gcc|clang) |^[[:space:]]+-' \
            "$BUILD/module.log" | tail -n 60 >&2
        die "module build failed (full log: build/module.log)"
    fi

    mkdir -p "$BUILD/modules"
    # a new file, renamed into place: a running nginx keeps its mapping
    cp "$copy/objs/ngx_http_aihub_module.so" \
        "$BUILD/modules/.ngx_http_aihub_module.so.$$"
    mv -f "$BUILD/modules/.ngx_http_aihub_module.so.$$" \
        "$BUILD/modules/ngx_http_aihub_module.so"
}


nginx_version() {
    sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' \
        "$1/src/core/nginx.h"
}


cmd_build() {
    mkdir -p "$BUILD"

    build_module

    if [ -f "$REPO/worker/Makefile" ]; then
        say "building aihub-worker"
        make -s -j"$JOBS" -C "$REPO/worker" BUILD="$BUILD"
    else
        warn "worker/Makefile missing: aihub-worker not built"
    fi

    if [ -f "$REPO/ngx_aihub_module/tests/Makefile" ]; then
        say "building module unit tests"
        make -s -j"$JOBS" -C "$REPO/ngx_aihub_module/tests" BUILD="$BUILD"
    fi
}


# --- test --------------------------------------------------------------------

cmd_test() {
    local tests=() f

    cmd_deps
    cmd_build

    cd "$REPO"

    if [ $# -gt 0 ]; then
        tests=("$@")
    else
        while IFS= read -r f; do
            tests+=("$f")
        done < <(find t -name '*.t' -not -path '*/node_modules/*' | sort)

        # C unit tests: binaries printing TAP; prove runs executables
        # directly
        for f in "$BUILD"/tests/*.t; do
            if [ -x "$f" ]; then
                tests+=("${f#"$REPO"/}")
            fi
        done
    fi

    # the official OpenAI SDK for t/24 and t/39, the Vercel AI SDK for
    # t/39, pinned by t/node/package-lock.json
    if [ -f t/node/package-lock.json ] && command -v npm >/dev/null; then
        if [ ! -d t/node/node_modules/openai ] \
           || [ ! -d t/node/node_modules/ai ] \
           || [ ! -d t/node/node_modules/@ai-sdk/openai ]
        then
            say "installing the SDKs for the tests (npm ci in t/node)"
            npm ci --prefix t/node --no-audit --no-fund --loglevel=error \
                || warn "npm ci failed: t/24 and t/39 will skip"
        fi
    fi

    # Redocly CLI, Redoc, Ajv and playwright-core for t/28, pinned by
    # docs/package-lock.json
    docs_npm || warn "npm ci in docs/ failed: t/28 will fail without it"

    # the whole suite also replays the fuzz corpus and fuzzes each target
    # briefly (AIHUB_FUZZ_SECONDS, default 30; 0 skips), before the tests
    # so that prove's summary is the last thing printed
    if [ $# -eq 0 ] && [ "${AIHUB_FUZZ_SECONDS:-30}" != 0 ]; then
        cmd_fuzz "${AIHUB_FUZZ_SECONDS:-30}"
    fi

    say "running ${#tests[@]} test files"
    prove -j"${AIHUB_TEST_JOBS:-2}" --timer -I t/lib "${tests[@]}"
}


# --- docs --------------------------------------------------------------------

# the npm packages of docs/package-lock.json, installed once

docs_npm() {
    command -v npm >/dev/null || return 1

    if [ ! -f "$REPO/docs/node_modules/.bin/redocly" ] \
       || [ "$REPO/docs/package-lock.json" \
            -nt "$REPO/docs/node_modules/.package-lock.json" ]
    then
        say "installing the docs tools (npm ci in docs/)"
        npm ci --prefix "$REPO/docs" --no-audit --no-fund --loglevel=error \
            || return 1
    fi
}


# the Node 20 end-of-life banner Redocly CLI prints on every run

redocly() {
    "$REPO/docs/node_modules/.bin/redocly" "$@" 2>&1 | grep -v '[║╔╚]' \
        | sed '/^[[:space:]]*$/d'
    return "${PIPESTATUS[0]}"
}


# ./build.sh docs [DIR]: lint docs/openapi.yaml (any error stops), then
# DIR (default build/docs) gets openapi.yaml, openapi.json, and index.html
# with redoc.standalone.js, a page that loads nothing from the network

cmd_docs() {
    local out=${1:-$BUILD/docs}

    command -v node >/dev/null || die "node is not installed (./build.sh deps)"
    docs_npm || die "npm ci in docs/ failed"

    mkdir -p "$out"
    out=$(cd "$out" && pwd)

    cd "$REPO/docs"

    say "linting docs/openapi.yaml (docs/redocly.yaml: the recommended rules)"
    redocly lint --format=stylish openapi.yaml \
        || die "docs/openapi.yaml has lint errors"

    say "writing ${out#"$REPO"/}/: openapi.json, openapi.yaml, index.html"
    cp openapi.yaml "$out/openapi.yaml"
    redocly bundle openapi.yaml --ext json -o "$out/openapi.json" >/dev/null \
        || die "redocly bundle failed"
    node page.mjs "$out/openapi.json" "$out" >/dev/null \
        || die "docs/page.mjs failed"
}


# --- demo --------------------------------------------------------------------

pidfile() { echo "$STATE/pids/$1.pid"; }


# the pid in pids/NAME.pid if that process is alive and still what we
# started (its command line contains PATTERN)

live_pid() {
    local name=$1 pattern=$2 pid

    [ -f "$(pidfile "$name")" ] || return 1
    pid=$(cat "$(pidfile "$name")")
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$pattern" || return 1
    echo "$pid"
}


# start NAME LOG CMD...: in its own session (so stop can end its whole
# process group), pid recorded

start_bg() {
    local name=$1 logfile=$2
    shift 2

    setsid "$@" < /dev/null >> "$logfile" 2>&1 &
    echo $! > "$(pidfile "$name")"
}


port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}


wait_until() {
    local what=$1 tries=$2
    shift 2

    while [ "$tries" -gt 0 ]; do
        if "$@"; then
            return 0
        fi
        sleep 0.1
        tries=$((tries - 1))
    done

    die "$what did not come up (logs in $SHOWN/logs/)"
}


worker_cli() {
    "$WORKER" --redis "127.0.0.1:$DEMO_REDIS_PORT" \
              --mysql-socket "$STATE/mysql/mysqld.sock" \
              --mysql-user root --mysql-db aihub "$@"
}


sql() {
    mariadb --no-defaults -uroot --socket="$STATE/mysql/mysqld.sock" \
            --batch --skip-column-names "$@"
}


mariadb_up() {
    sql -e 'SELECT 1' > /dev/null 2>&1
}


# the value of NAME in demo.env, if that key is still known to the ledger

demo_key() {
    local name=$1 key

    [ -f "$STATE/demo.env" ] || return 0
    key=$(sed -n "s/^$name=//p" "$STATE/demo.env" | tail -n 1)
    [ -n "$key" ] || return 0

    if [ "$(sql aihub -e "SELECT COUNT(*) FROM api_keys
                           WHERE key_hash = SHA2('$key', 256)
                             AND status = 'active'" 2>/dev/null)" = 1 ]
    then
        echo "$key"
    fi
}


demo_providers() {
    if [ -z "${OPENROUTER_API_KEY:-}" ] && [ -z "${GEMINI_API_KEY:-}" ]; then
        echo "    aihub_provider mock url=http://127.0.0.1:$DEMO_MOCK_PORT/v1" \
             "key_env=AIHUB_MOCK_KEY;"
        return
    fi

    if [ -n "${OPENROUTER_API_KEY:-}" ]; then
        echo "    aihub_provider openrouter url=https://openrouter.ai/api/v1" \
             "key_env=OPENROUTER_API_KEY;"
    fi

    if [ -n "${GEMINI_API_KEY:-}" ]; then
        echo "    aihub_provider gemini" \
             "url=https://generativelanguage.googleapis.com/v1beta/openai" \
             "kind=gemini key_env=GEMINI_API_KEY;"
    fi

    # proxy_pass with variables resolves provider names at run time
    echo "    resolver $(awk '/^nameserver/ { print $2; exit }' \
                           /etc/resolv.conf 2>/dev/null || echo 127.0.0.1)" \
         "ipv6=off;"
    echo "    proxy_ssl_server_name on;"
}


demo_nginx_conf() {
    local providers

    providers=$(demo_providers)

    sed -e "s|@MODULE@|$BUILD/modules/ngx_http_aihub_module.so|g" \
        -e "s|@DIR@|$STATE/nginx|g" \
        -e "s|@PORT@|$DEMO_PORT|g" \
        -e "s|@REDIS@|127.0.0.1:$DEMO_REDIS_PORT|g" \
        -e "s|@DOCS@|$BUILD/docs|g" \
        "$REPO/conf/demo-nginx.conf.in" \
    | awk -v p="$providers" '/@PROVIDERS@/ { print p; next } { print }' \
        > "$STATE/nginx/nginx.conf"
}


cmd_demo() {
    local free pro model mock=1

    cmd_deps
    cmd_build

    [ -x "$WORKER" ] || die "aihub-worker was not built ($WORKER)"
    [ "$(id -u)" -eq 0 ] || die "the demo runs as root (MariaDB, nginx)"

    if [ -n "${OPENROUTER_API_KEY:-}" ] || [ -n "${GEMINI_API_KEY:-}" ]; then
        mock=0
    fi

    # nginx reads the provider credential from its environment
    export AIHUB_MOCK_KEY=$DEMO_MOCK_KEY

    # a running demo is restarted with the current build and configuration
    cmd_stop quiet

    for p in "$DEMO_PORT" "$DEMO_REDIS_PORT" "$DEMO_MOCK_PORT"; do
        if port_busy "$p"; then
            die "port $p is in use by something else (set AIHUB_DEMO_PORT," \
                "AIHUB_DEMO_REDIS_PORT or AIHUB_DEMO_MOCK_PORT)"
        fi
    done

    mkdir -p "$STATE"/{pids,logs,redis,mysql/tmp,nginx}

    say "starting Redis on 127.0.0.1:$DEMO_REDIS_PORT"
    start_bg redis "$STATE/logs/redis.log" \
        redis-server --bind 127.0.0.1 --port "$DEMO_REDIS_PORT" \
                     --dir "$STATE/redis" --save '' --appendonly yes \
                     --appendfsync always --daemonize no
    wait_until Redis 100 port_busy "$DEMO_REDIS_PORT"

    say "starting MariaDB (socket $SHOWN/mysql/mysqld.sock)"
    if [ ! -d "$STATE/mysql/data/mysql" ]; then
        mariadb-install-db --no-defaults --user=root \
            --datadir="$STATE/mysql/data" --tmpdir="$STATE/mysql/tmp" \
            --auth-root-authentication-method=normal --skip-test-db \
            > "$STATE/logs/mariadb-install.log" 2>&1 \
            || die "mariadb-install-db failed ($SHOWN/logs/mariadb-install.log)"
    fi
    start_bg mariadb "$STATE/logs/mariadb.out" \
        mariadbd --no-defaults --user=root --datadir="$STATE/mysql/data" \
                 --socket="$STATE/mysql/mysqld.sock" --skip-networking \
                 --tmpdir="$STATE/mysql/tmp" \
                 --skip-name-resolve --skip-log-bin \
                 --innodb-buffer-pool-size=64M \
                 --log-error="$STATE/logs/mariadb.log" \
                 --pid-file="$STATE/mysql/mysqld.pid"
    wait_until MariaDB 200 mariadb_up
    sql -e 'CREATE DATABASE IF NOT EXISTS aihub CHARACTER SET utf8mb4'

    say "applying migrations"
    worker_cli migrate --sql-dir "$REPO/sql"

    if [ "$mock" = 1 ]; then
        say "starting the mock provider on 127.0.0.1:$DEMO_MOCK_PORT"
        start_bg mock "$STATE/logs/mock.out" \
            perl "$REPO/t/mock_provider.pl" --port "$DEMO_MOCK_PORT" \
                 --key "$DEMO_MOCK_KEY" --log "$STATE/logs/mock.log"
        wait_until "the mock provider" 100 port_busy "$DEMO_MOCK_PORT"
        model='mock-basic'
    elif [ -n "${OPENROUTER_API_KEY:-}" ]; then
        model=openai/gpt-4o-mini
    else
        model=google/gemini-2.0-flash
    fi

    say "creating the demo keys"
    free=$(demo_key AIHUB_KEY_FREE)
    pro=$(demo_key AIHUB_KEY_PRO)

    if [ -z "$free" ]; then
        free=$(worker_cli key create --account demo-free --plan free \
               | head -n 1)
    fi

    if [ -z "$pro" ]; then
        pro=$(worker_cli key create --account demo-pro --plan pro \
              | head -n 1)
    fi

    if [ -z "$free" ] || [ -z "$pro" ]; then
        die "aihub-worker key create failed"
    fi

    # Redis may have been wiped: rebuild it from the ledger
    worker_cli sync > "$STATE/logs/sync.log" 2>&1 \
        || warn "aihub-worker sync failed ($SHOWN/logs/sync.log)"

    say "starting aihub-worker"
    start_bg worker "$STATE/logs/worker.log" \
        "$WORKER" --redis "127.0.0.1:$DEMO_REDIS_PORT" \
                  --mysql-socket "$STATE/mysql/mysqld.sock" \
                  --mysql-user root --mysql-db aihub run

    # the API reference at /docs/ and /v1/openapi.json, if not built yet
    if [ ! -f "$BUILD/docs/index.html" ] \
       || [ "$REPO/docs/openapi.yaml" -nt "$BUILD/docs/index.html" ]
    then
        (cmd_docs) || warn "no API reference (./build.sh docs failed)"
    fi

    say "starting nginx on 127.0.0.1:$DEMO_PORT"
    demo_nginx_conf
    "$NGINX_BIN" -p "$STATE/nginx/" -c "$STATE/nginx/nginx.conf" \
                     -e "$STATE/nginx/error.log" -t -q \
        || die "nginx -t failed for $SHOWN/nginx/nginx.conf"
    start_bg nginx "$STATE/logs/nginx.out" \
        "$NGINX_BIN" -p "$STATE/nginx/" -c "$STATE/nginx/nginx.conf" \
                     -e "$STATE/nginx/error.log"
    wait_until nginx 100 port_busy "$DEMO_PORT"

    # the URL and keys for clients, and what every aihub-worker command
    # reads from its environment (worker/config.c) to reach the demo
    cat > "$STATE/demo.env" <<END
AIHUB_URL=http://127.0.0.1:$DEMO_PORT
AIHUB_KEY_FREE=$free
AIHUB_KEY_PRO=$pro
AIHUB_REDIS=127.0.0.1:$DEMO_REDIS_PORT
AIHUB_MYSQL_SOCKET=$STATE/mysql/mysqld.sock
AIHUB_MYSQL_USER=root
AIHUB_MYSQL_DB=aihub
AIHUB_WORKER=$WORKER
END

    cat <<END

aihub demo is running ($SHOWN/, logs in $SHOWN/logs/, stop: ./build.sh stop)
Keys and URL: $SHOWN/demo.env
Admin commands against the demo: load its settings, then any command works:

  set -a; . $SHOWN/demo.env; set +a
  ${WORKER#"$PWD"/} account list

API reference: http://127.0.0.1:$DEMO_PORT/docs/ (the document:
http://127.0.0.1:$DEMO_PORT/v1/openapi.json)

Try it:

curl -sS http://127.0.0.1:$DEMO_PORT/v1/chat/completions \\
  -H 'Authorization: Bearer $free' \\
  -H 'Content-Type: application/json' \\
  -d '{"model": "$model", "messages": [{"role": "user", "content": "Hello!"}]}'

END
}


# running, not a zombie waiting for init to reap it

proc_running() {
    [ -r "/proc/$1/status" ] \
        && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null
}


# stop NAME PATTERN SECONDS: TERM its process group, wait, then KILL

stop_one() {
    local name=$1 pattern=$2 secs=$3 pid i

    if ! pid=$(live_pid "$name" "$pattern"); then
        rm -f "$(pidfile "$name")"
        return 0
    fi

    [ "${QUIET:-}" = quiet ] || say "stopping $name (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || :

    for ((i = 0; i < secs * 10; i++)); do
        proc_running "$pid" || break
        sleep 0.1
    done

    if proc_running "$pid"; then
        warn "$name (pid $pid) did not stop in ${secs}s, killing it"
    fi

    # whatever is left of its process group
    kill -KILL -- "-$pid" 2>/dev/null || :
    rm -f "$(pidfile "$name")"
}


cmd_stop() {
    QUIET=${1:-}

    [ -d "$STATE/pids" ] || return 0

    stop_one nginx "$NGINX_BIN" 10
    stop_one worker aihub-worker 10
    stop_one mock mock_provider.pl 5
    stop_one redis redis-server 10
    stop_one mariadb mariadbd 30
}


# --- bench -------------------------------------------------------------------

cmd_bench() {
    [ -f "$REPO/t/bench/run.sh" ] || die "bench: t/bench/run.sh is missing"
    exec bash "$REPO/t/bench/run.sh" "$@"
}


# --- test-asan ---------------------------------------------------------------
#
# nginx itself built with AddressSanitizer and UBSan, the module with the
# same flags, and the whole suite run against them.  nginx's source is
# Debian's (the same 1.22.1 as the installed nginx-core).  The built nginx
# is kept under build/asan/ keyed by version and flags: a second run does
# not rebuild it.

ASAN_NGINX_VERSION=1.22.1
ASAN_NGINX_SHA256=9ebb333a9e82b952acd3e2b4aeb1d4ff6406f72491bab6cd9fe69f0dea737f31
ASAN_CC_OPT='-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined'
ASAN_CC_OPT+=' -fno-sanitize=alignment -DNGX_DEBUG_PALLOC=1'
ASAN_LD_OPT='-fsanitize=address,undefined'
# the worker keeps UBSan's alignment check (only nginx's core needs it
# off), and stops at the first UB report: compiled to go on after one,
# GCC 12 warns of a "null format string" on the path after the nonnull
# check of a vsnprintf() format (buf.c, db.c), a path that never runs
ASAN_WORKER_CFLAGS='-O1 -g -fno-omit-frame-pointer'
ASAN_WORKER_CFLAGS+=' -fsanitize=address,undefined'
ASAN_WORKER_CFLAGS+=' -fno-sanitize-recover=undefined'
ASAN_DIR=$BUILD/asan
ASAN_SRC_LIST=/etc/apt/sources.list.d/aihub-deb-src.sources


# Debian's nginx_1.22.1.orig.tar.gz, checked; prints its path

asan_fetch_nginx() {
    local dl=$ASAN_DIR/download
    local tarball=$dl/nginx_$ASAN_NGINX_VERSION.orig.tar.gz

    if [ -f "$tarball" ] \
       && echo "$ASAN_NGINX_SHA256  $tarball" | sha256sum -c --status
    then
        echo "$tarball"
        return 0
    fi

    [ "$(id -u)" -eq 0 ] \
        || die "fetching nginx's source needs root (apt-get update), or put" \
               "nginx_$ASAN_NGINX_VERSION.orig.tar.gz in ${dl#"$REPO"/}/"

    # deb-src entries for the same archives and suites as the installed
    # sources
    if [ ! -f "$ASAN_SRC_LIST" ]; then
        say "adding deb-src entries ($ASAN_SRC_LIST)"
        sed 's/^Types:.*/Types: deb-src/' \
            /etc/apt/sources.list.d/debian.sources > "$ASAN_SRC_LIST"
    fi

    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -q > "$ASAN_DIR/apt.log" 2>&1 \
        || { tail -n 20 "$ASAN_DIR/apt.log" >&2; die "apt-get update failed"; }

    rm -rf "$dl"
    mkdir -p "$dl"

    # the .dsc from the security suite may 404: the orig tarball is enough
    say "apt-get source --download-only nginx"
    (cd "$dl" && apt-get source --download-only nginx) \
        >> "$ASAN_DIR/apt.log" 2>&1 || :

    [ -f "$tarball" ] || {
        tail -n 20 "$ASAN_DIR/apt.log" >&2
        die "apt-get source did not fetch ${tarball##*/} (log: build/asan/apt.log)"
    }

    echo "$ASAN_NGINX_SHA256  $tarball" | sha256sum -c --status \
        || die "${tarball##*/}: sha256 is not $ASAN_NGINX_SHA256"

    echo "$tarball"
}


# builds nginx with the sanitizers once per version and flags; prints the
# directory holding sbin/nginx and the configured source tree

asan_build_nginx() {
    local tarball key dir log

    # shellcheck disable=SC1091
    source "$DEBIAN_NGINX_SRC/conf_flags"

    key=$({ printf '%s\n' "$ASAN_NGINX_VERSION" "$ASAN_NGINX_SHA256" \
                   "${NGX_CONF_FLAGS[@]}" "$ASAN_CC_OPT" "$ASAN_LD_OPT"
            cc --version | head -n 1; } | sha256sum | cut -c1-12)
    dir=$ASAN_DIR/nginx-$ASAN_NGINX_VERSION-$key

    if [ -x "$dir/sbin/nginx" ]; then
        echo "$dir"
        return 0
    fi

    tarball=$(asan_fetch_nginx)

    rm -rf "$dir"
    mkdir -p "$dir/sbin"
    tar -xzf "$tarball" -C "$dir"
    log=$dir/build.log

    say "building nginx $ASAN_NGINX_VERSION with ASan+UBSan" \
        "(several minutes; log ${log#"$REPO"/})"

    if ! (cd "$dir/nginx-$ASAN_NGINX_VERSION" \
          && ./configure "${NGX_CONF_FLAGS[@]}" \
                 --builddir="$dir/objs-nginx" \
                 --with-cc-opt="$ASAN_CC_OPT" --with-ld-opt="$ASAN_LD_OPT" \
          && make -j"$JOBS" -f "$dir/objs-nginx/Makefile" binary) \
            > "$log" 2>&1
    then
        tail -n 30 "$log" >&2
        die "the sanitizer nginx build failed (log: ${log#"$REPO"/})"
    fi

    cp "$dir/objs-nginx/nginx" "$dir/sbin/nginx"
    echo "$dir"
}


# the module, with the same flags, against that source tree

asan_build_module() {
    local dir=$1 src log stamp

    src=$dir/nginx-$ASAN_NGINX_VERSION
    log=$ASAN_DIR/module.log

    # shellcheck disable=SC1091
    source "$DEBIAN_NGINX_SRC/conf_flags"

    # configure again only when the addon's config or the tree changes
    stamp=$({ sha256sum < "$REPO/config"; echo "$dir $REPO"; } | sha256sum)

    if [ "$(cat "$ASAN_DIR/objs-module/.aihub-configure" 2>/dev/null)" \
         != "$stamp" ]
    then
        say "configuring the module for the sanitizer nginx"
        rm -f "$ASAN_DIR/objs-module/.aihub-configure"

        (cd "$src" && ./configure "${NGX_CONF_FLAGS[@]}" \
             --builddir="$ASAN_DIR/objs-module" \
             --with-cc-opt="$ASAN_CC_OPT" --with-ld-opt="$ASAN_LD_OPT" \
             --add-dynamic-module="$REPO") > "$log" 2>&1 \
            || { tail -n 25 "$log" >&2; die "module configure failed" \
                                         "(log: build/asan/module.log)"; }

        echo "$stamp" > "$ASAN_DIR/objs-module/.aihub-configure"
    fi

    say "building ngx_http_aihub_module.so with ASan+UBSan"

    if ! (cd "$src" \
          && make -j"$JOBS" -f "$ASAN_DIR/objs-module/Makefile" modules) \
            >> "$log" 2>&1
    then
        grep -v -E '^[[:space:]]*(cc|gcc|clang) |^[[:space:]]+-' "$log" \
            | tail -n 60 >&2
        die "the sanitizer module build failed (log: build/asan/module.log)"
    fi

    mkdir -p "$ASAN_DIR/modules"
    cp "$ASAN_DIR/objs-module/ngx_http_aihub_module.so" \
        "$ASAN_DIR/modules/.ngx_http_aihub_module.so.$$"
    mv -f "$ASAN_DIR/modules/.ngx_http_aihub_module.so.$$" \
        "$ASAN_DIR/modules/ngx_http_aihub_module.so"
}


# aihub-worker with ASan+UBSan, in build/asan/worker/ (its own objects:
# the Makefile's BUILD), the flags through the environment so the
# Makefile's own -std, -W and include flags are added to them
asan_build_worker() {
    say "building aihub-worker with ASan+UBSan"
    CFLAGS=$ASAN_WORKER_CFLAGS make -s -j"$JOBS" -C "$REPO/worker" \
        BUILD="$ASAN_DIR/worker" "$ASAN_DIR/worker/bin/aihub-worker" \
        || die "the sanitizer aihub-worker build failed"
}


# the start of a wrapper the tests run in place of NAME: which test runs
# it, and the file its sanitizer reports go to
asan_wrapper_head() {
    local name=$1 short=$2

    cat <<END
#!/bin/sh
# generated by build.sh test-asan: the sanitizer $name, as the tests run it
test=\$(tr '\\0' '\\n' < /proc/\$PPID/cmdline 2>/dev/null \\
       | grep -m 1 '\\.t\$' | sed 's|.*/||; s|\\.t\$||')
log=$ASAN_DIR/reports/\${test:-$short}.$short
END
}


# stdin to the executable FILE, replaced in one rename
asan_install_wrapper() {
    cat > "$1.$$"
    chmod 755 "$1.$$"
    mv -f "$1.$$" "$1"
}


# the aihub-worker the tests run (AIHUB_WORKER): reports to
# build/asan/reports/<test>.worker.<pid>, leak check on; a library a test
# preloads into it (t/70's fault) comes after the sanitizer runtimes,
# which must be first
asan_write_worker_wrapper() {
    {
        asan_wrapper_head aihub-worker worker
        cat <<END
export ASAN_OPTIONS="\$AIHUB_ASAN_OPTIONS:log_path=\$log"
export UBSAN_OPTIONS="\$AIHUB_UBSAN_OPTIONS:log_path=\$log"
export LSAN_OPTIONS="\$AIHUB_LSAN_OPTIONS"
[ -z "\$LD_PRELOAD" ] || export LD_PRELOAD="\$AIHUB_ASAN_RUNTIMES \$LD_PRELOAD"
exec $ASAN_DIR/worker/bin/aihub-worker "\$@"
END
    } | asan_install_wrapper "$ASAN_DIR/aihub-worker"
}


# the nginx the tests start: sets the sanitizer options, preloads the
# module, and writes reports to build/asan/reports/<test>.nginx.<pid>
asan_write_wrapper() {
    local nginx=$1

    {
        asan_wrapper_head nginx nginx
        cat <<END
# nginx -t, -s, -v return from main() without freeing the configuration
# they read (by design; the master frees it when it exits): no leak check
leaks=1
for a in "\$@"; do
    case \$a in -t|-T|-s|-v|-V|-h|-q) leaks=0 ;; esac
done
export ASAN_OPTIONS="\$AIHUB_ASAN_OPTIONS:detect_leaks=\$leaks:log_path=\$log"
# (the same log_path for UBSan too: GCC's runtimes share the common flags
# and the last one parsed wins)
export UBSAN_OPTIONS="\$AIHUB_UBSAN_OPTIONS:log_path=\$log"
export LSAN_OPTIONS="\$AIHUB_LSAN_OPTIONS"
export LD_PRELOAD="\$AIHUB_ASAN_PRELOAD"
exec $nginx "\$@"
END
    } | asan_install_wrapper "$ASAN_DIR/nginx"
}


cmd_test_asan() {
    local dir supp=$REPO/ngx_aihub_module/sanitizers rc=0 f start

    cmd_deps
    start=$(date +%s)
    mkdir -p "$ASAN_DIR"

    dir=$(asan_build_nginx)
    asan_build_module "$dir"
    cmd_build
    asan_build_worker
    asan_write_wrapper "$dir/sbin/nginx"
    asan_write_worker_wrapper

    rm -rf "$ASAN_DIR/reports"
    mkdir -p "$ASAN_DIR/reports"

    # why each option is there: ngx_aihub_module/sanitizers/README.  ASan
    # and LSan reports go to build/asan/reports/ (checked below); UBSan
    # (GCC's runtime ignores log_path) prints to nginx's stderr, which the
    # harness checks, and halts, so a worker dies with an [alert]
    export AIHUB_ASAN_OPTIONS="detect_odr_violation=0:halt_on_error=1"
    export AIHUB_UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
    AIHUB_UBSAN_OPTIONS+=":suppressions=$supp/ubsan.supp"
    export AIHUB_LSAN_OPTIONS="suppressions=$supp/lsan.supp"
    AIHUB_LSAN_OPTIONS+=":print_suppressions=0"
    export AIHUB_ASAN_RUNTIMES="$(cc -print-file-name=libasan.so)"
    AIHUB_ASAN_RUNTIMES+=" $(cc -print-file-name=libubsan.so)"
    export AIHUB_ASAN_PRELOAD="$AIHUB_ASAN_RUNTIMES"
    AIHUB_ASAN_PRELOAD+=" $ASAN_DIR/modules/ngx_http_aihub_module.so"

    export AIHUB_NGINX=$ASAN_DIR/nginx
    export AIHUB_MODULE=$ASAN_DIR/modules/ngx_http_aihub_module.so
    export AIHUB_WORKER=$ASAN_DIR/aihub-worker

    say "nginx: ${AIHUB_NGINX#"$REPO"/} -> ${dir#"$REPO"/}/sbin/nginx"
    # the fuzz targets have their own sanitizers: not again here
    (AIHUB_FUZZ_SECONDS=0 cmd_test "$@") || rc=$?

    # a report, not the summary of suppressions LeakSanitizer may print
    for f in "$ASAN_DIR"/reports/*; do
        [ -e "$f" ] || continue
        grep -q -E 'ERROR: [A-Za-z]+Sanitizer|runtime error|WARNING: ' "$f" \
            || continue
        printf '\n==> sanitizer report %s\n' "${f#"$REPO"/}" >&2
        head -n 60 "$f" >&2
        [ "$rc" -ne 0 ] || rc=1
    done

    say "test-asan: $(( $(date +%s) - start )) s"

    [ "$rc" -eq 0 ] || die "test-asan failed (the tests above; ASan and" \
                           "LSan reports, if any: build/asan/reports/)"
    say "test-asan: the suite passed with no sanitizer report"
}


# --- fuzz --------------------------------------------------------------------
#
# libFuzzer targets for the pure engine files (ngx_aihub_module/fuzz/): each
# replays the repository's corpus, then fuzzes for SECONDS with its
# dictionary.  New inputs go to build/fuzz/corpus/, a failing input to
# build/fuzz/crashes/, and fails the run.

FUZZ_SRC=$REPO/ngx_aihub_module/fuzz
FUZZ_OUT=$BUILD/fuzz
FUZZ_TARGETS=(sse usage_json key_format period ratelimit usage_event record
              body responses event_read)
FUZZ_PACKAGES=(clang libclang-rt-14-dev)


fuzz_deps() {
    local missing=() p

    for p in "${FUZZ_PACKAGES[@]}"; do
        installed "$p" || missing+=("$p")
    done

    [ ${#missing[@]} -eq 0 ] && return 0

    [ "$(id -u)" -eq 0 ] || die "fuzz needs Debian packages: ${missing[*]}
(as root: apt-get install ${missing[*]})"

    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends "${missing[@]}" \
        || die "apt-get install ${missing[*]} failed"
}


fuzz_one() {
    local t=$1 secs=$2 bin=$FUZZ_OUT/bin/fuzz_$1 log=$FUZZ_OUT/$1.log
    local opts

    mkdir -p "$FUZZ_OUT/corpus/$t" "$FUZZ_OUT/crashes"

    # one input takes milliseconds; 60 s (not 10) so that a machine
    # shared with other builds does not pass for a hang

    opts=(-timeout=60 -artifact_prefix="$FUZZ_OUT/crashes/$t-"
          -dict="$FUZZ_SRC/dict/$t.dict")

    # every input of the repository's corpus, once
    if ! "$bin" "${opts[@]}" -runs=0 "$FUZZ_SRC/corpus/$t" > "$log" 2>&1
    then
        grep -E 'property|ERROR|SUMMARY|runtime error|Test unit' "$log" >&2
        warn "fuzz_$t: the corpus replay failed (log: ${log#"$REPO"/})"
        return 1
    fi

    # new inputs are written to the first directory only
    if ! "$bin" "${opts[@]}" -max_total_time="$secs" -print_final_stats=1 \
            "$FUZZ_OUT/corpus/$t" "$FUZZ_SRC/corpus/$t" >> "$log" 2>&1
    then
        grep -E 'property|ERROR|SUMMARY|runtime error|Test unit' "$log" >&2
        warn "fuzz_$t failed (log: ${log#"$REPO"/})"
        return 1
    fi

    printf '    fuzz_%-12s %s\n' "$t" \
        "$(grep -E '^Done [0-9]+ runs' "$log" | tail -n 1)" >&2
}


cmd_fuzz() {
    local secs=${1:-30} t failed=() start targets=()

    case "$secs" in
        ''|*[!0-9]*) die "usage: ./build.sh fuzz [SECONDS [TARGET...]]" ;;
    esac

    [ $# -gt 0 ] && shift

    for t in "$@"; do
        [[ " ${FUZZ_TARGETS[*]} " == *" $t "* ]] \
            || die "no fuzz target $t (targets: ${FUZZ_TARGETS[*]})"
        targets+=("$t")
    done

    [ ${#targets[@]} -gt 0 ] || targets=("${FUZZ_TARGETS[@]}")

    fuzz_deps
    start=$(date +%s)

    say "building the fuzz targets (clang)"
    make -s -j"$JOBS" -C "$FUZZ_SRC" BUILD="$BUILD"

    say "replaying the corpus and fuzzing each target for ${secs}s," \
        "$JOBS at a time"

    # one target per core: each is one process; a failure is remembered
    # by a file, since the targets run in subshells
    rm -f "$FUZZ_OUT"/*.failed
    local running=0

    for t in "${targets[@]}"; do
        (fuzz_one "$t" "$secs" || : > "$FUZZ_OUT/$t.failed") &
        running=$((running + 1))

        if [ "$running" -ge "$JOBS" ]; then
            wait -n || true
            running=$((running - 1))
        fi
    done

    wait

    for t in "${targets[@]}"; do
        [ -e "$FUZZ_OUT/$t.failed" ] && failed+=("$t")
    done

    say "fuzz: $(( $(date +%s) - start )) s"

    [ ${#failed[@]} -eq 0 ] || die "fuzz failed: ${failed[*]} (inputs in" \
                                   "build/fuzz/crashes/)"
    say "fuzz: no target failed"
}


# --- deb ---------------------------------------------------------------------

# the Debian packages (packaging/deb/build-deb.sh says how)

cmd_deb() {
    cmd_build
    "$REPO/packaging/deb/build-deb.sh" "$REPO" "$BUILD"
}


# --- main --------------------------------------------------------------------

main() {
    local cmd=${1:-}

    [ $# -gt 0 ] && shift

    case "$cmd" in
        deps)           cmd_deps ;;
        build)          cmd_build ;;
        test)           cmd_test "$@" ;;
        demo)           cmd_demo ;;
        stop)           cmd_stop ;;
        bench)          cmd_bench "$@" ;;
        docs)           cmd_docs "$@" ;;
        test-asan)      cmd_test_asan "$@" ;;
        fuzz)           cmd_fuzz "$@" ;;
        deb)            cmd_deb ;;
        -h|--help|help) usage 0 ;;
        *)              usage 1 >&2 ;;
    esac
}

main "$@"
