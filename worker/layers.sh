#!/bin/sh
#
# layers.sh OBJECT...: fails when the objects depend on each other in a
# loop.  Each undefined aw_* or aihub_* symbol of an object is an arrow to
# the object that defines it; tsort(1) must find an order for the arrows.
# The worker's Makefile runs it before linking, so a loop fails the build.

set -eu

defs=$(mktemp)
arrows=$(mktemp)
err=$(mktemp)
trap 'rm -f "$defs" "$arrows" "$err"' EXIT

for o in "$@"; do
    nm --defined-only "$o" \
        | awk -v o="${o##*/}" '$2 ~ /^[TDBR]$/ && $3 ~ /^(aw|aihub)_/ {
              print $3, o }'
done | sort -u >"$defs"

for o in "$@"; do
    nm --undefined-only "$o" \
        | awk -v o="${o##*/}" '$2 ~ /^(aw|aihub)_/ { print $2, o }'
done | sort -u | join - "$defs" | awk '$2 != $3 { print $2, $3 }' >"$arrows"

if ! tsort "$arrows" >/dev/null 2>"$err"; then
    echo "aihub-worker: objects depend on each other in a loop:" >&2
    sed 's/^tsort: //' "$err" >&2
    exit 1
fi
