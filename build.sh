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
#
# Environment:
#   NGINX_SRC=/path/to/nginx-x.y.z   build the module against that source
#                                    tree (--with-compat) instead of
#                                    Debian's nginx-dev
#   AIHUB_CC_OPT                     module CFLAGS (default
#                                    "-O2 -g -Wall -Wextra -Werror")
#   AIHUB_TEST_JOBS                  parallel test files (default 2)
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

PACKAGES=(nginx-core nginx-dev libhiredis-dev libcjson-dev
          libcurl4-openssl-dev libmariadb-dev libssl-dev mariadb-server
          redis-server perl wrk curl ca-certificates gcc make pkg-config
          chromium)


say() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'build.sh: warning: %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }


usage() {
    sed -n '3,12p' "$0" | sed 's/^# \{0,1\}//'
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

    # the official OpenAI SDK for t/24, pinned by t/node/package-lock.json
    if [ -f t/node/package-lock.json ] && command -v npm >/dev/null; then
        if [ ! -d t/node/node_modules/openai ]; then
            say "installing the OpenAI SDK for the tests (npm ci)"
            npm ci --prefix t/node --no-audit --no-fund --loglevel=error \
                || warn "npm ci failed: t/24 will skip"
        fi
    fi

    # Redocly CLI, Redoc, Ajv and playwright-core for t/28, pinned by
    # docs/package-lock.json
    docs_npm || warn "npm ci in docs/ failed: t/28 will fail without it"

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
                     --appendfsync everysec --daemonize no
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

    cat > "$STATE/demo.env" <<END
AIHUB_URL=http://127.0.0.1:$DEMO_PORT
AIHUB_KEY_FREE=$free
AIHUB_KEY_PRO=$pro
END

    cat <<END

aihub demo is running ($SHOWN/, logs in $SHOWN/logs/, stop: ./build.sh stop)
Keys and URL: $SHOWN/demo.env
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
    if [ -f "$REPO/t/bench/run.sh" ]; then
        exec bash "$REPO/t/bench/run.sh" "$@"
    fi

    echo "bench: see issue 6, not implemented yet" >&2
    exit 2
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
        -h|--help|help) usage 0 ;;
        *)              usage 1 >&2 ;;
    esac
}

main "$@"
