#!/usr/bin/env bash
#
# packaging/deb/build-deb.sh REPO BUILD: "./build.sh deb".  Builds
# libnginx-mod-http-aihub and aihub-worker into BUILD/deb/ from what
# "./build.sh build" made, with Debian's tools: the files of each package
# laid out under BUILD/deb/work/debian/<package>/, dpkg-shlibdeps for the
# libraries they link, the nginx ABI read from the installed nginx's
# Provides, dpkg-gencontrol for the control files (from
# packaging/deb/control and a changelog versioned from git), dpkg-deb to
# build, and lintian (when installed) to check.

set -euo pipefail

REPO=$1
BUILD=$2

PKG=$REPO/packaging/deb
OUT=$BUILD/deb
WORK=$OUT/work
MODULE=$BUILD/modules/ngx_http_aihub_module.so
WORKER=$BUILD/bin/aihub-worker

MOD=libnginx-mod-http-aihub
WRK=aihub-worker

# who builds the packages: set AIHUB_DEB_MAINTAINER to a real address
MAINTAINER=${AIHUB_DEB_MAINTAINER:-aihub team <aihub@example.org>}

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build.sh deb: %s\n' "$*" >&2; exit 1; }


# "v1.2-3-gabc1234" -> "1.2+3.gabc1234"; no tag: 0~git<commit date>.<hash>

upstream_version() {
    local d

    if d=$(git -C "$REPO" describe --tags --match 'v[0-9]*' 2>/dev/null); then
        d=${d#v}
        echo "${d/-/+}" | tr '-' '.'
        return
    fi

    printf '0~git%s.%s\n' \
        "$(git -C "$REPO" log -1 --format=%cd --date=format:%Y%m%d)" \
        "$(git -C "$REPO" rev-parse --short=7 HEAD)"
}


# the ABI the installed nginx provides, e.g. nginx-abi-1.22.1-7

nginx_abi() {
    dpkg-query -W -f='${Provides}\n' nginx 2>/dev/null \
        | tr ',' '\n' | sed -n 's/^ *\(nginx-abi-[^ ]*\).*$/\1/p' | head -n 1
}


gz() {
    gzip -9n < "$1" > "$2"
    chmod 0644 "$2"
}


# roff for text shown as is: backslashes and leading dots/quotes escaped

roff_text() {
    sed -e 's/\\/\\e/g' -e "s/^\([.']\)/\\\\\&\1/"
}


# aihub-worker(1): the --help of the program and of every command

man_page() {
    local version=$1 date=$2 c

    cat <<END
.TH AIHUB-WORKER 1 "$date" "aihub $version" "User Commands"
.SH NAME
aihub-worker \\- usage ledger, billing and administration for aihub
.SH SYNOPSIS
.B aihub-worker
[\\fIglobal options\\fR] \\fICOMMAND\\fR [\\fIoptions\\fR]
.SH DESCRIPTION
aihub-worker drains the usage events the aihub nginx module writes to
Redis into the MySQL/MariaDB ledger, issues invoices and reports, and
administers keys, accounts, models and plans.
The text below is the program's own \\fB\\-\\-help\\fR.
.PP
.nf
END
    "$WORKER" --help | roff_text
    echo '.fi'
    echo '.SH COMMANDS'

    for c in migrate key account sync rebuild run invoice report prices \
             model plan
    do
        printf '.SS %s\n.nf\n' "$c"
        "$WORKER" "$c" --help | roff_text
        echo '.fi'
    done

    cat <<END
.SH EXIT STATUS
0 done, 1 runtime failure (message on stderr), 2 bad arguments (the
usage follows the message).
.SH FILES
.TP
.I /etc/aihub/worker.conf
the settings ("name = value"), read with \\fB\\-\\-config\\fR
.TP
.I /usr/share/aihub/sql
the migrations \\fBmigrate\\fR applies
.TP
.I /lib/systemd/system/aihub-worker.service
the drain as a service, run as the user aihub
.SH SEE ALSO
.BR nginx (8),
/usr/share/doc/aihub-worker/README.md.gz
END
}


[ -f "$MODULE" ] || die "no $MODULE: run ./build.sh build first"

for tool in dpkg-deb dpkg-gencontrol dpkg-shlibdeps dpkg-query strip; do
    command -v "$tool" >/dev/null \
        || die "$tool is missing (apt-get install dpkg-dev)"
done

ABI=$(nginx_abi)
[ -n "$ABI" ] \
    || die "the installed nginx provides no nginx-abi-* (is nginx installed?)"

VERSION="$(upstream_version)-1"
DATE=$(git -C "$REPO" log -1 --format=%cD)

say "packaging aihub $VERSION for $ABI"

rm -rf "$WORK" "$OUT"/*.deb "$OUT/worker-build"
mkdir -p "$WORK/debian" "$OUT"

sed "s|@MAINTAINER@|$MAINTAINER|" "$PKG/control" > "$WORK/debian/control"

cat > "$WORK/debian/changelog" <<END
aihub ($VERSION) unstable; urgency=medium

  * Built from the aihub repository at commit
    $(git -C "$REPO" rev-parse HEAD).

 -- $MAINTAINER  $DATE
END

umask 022

# the worker again, with Debian's hardening flags (fortify, relro, bindnow,
# PIE); its own flags follow them (worker/Makefile appends to CFLAGS)

say "building aihub-worker with dpkg-buildflags"
(
    eval "$(DEB_BUILD_MAINT_OPTIONS=hardening=+all dpkg-buildflags \
                --export=sh)"
    CFLAGS="$CFLAGS $CPPFLAGS $LDFLAGS" \
        make -s -C "$REPO/worker" BUILD="$OUT/worker-build" \
             "$OUT/worker-build/bin/aihub-worker" >&2
) || die "the worker build with dpkg-buildflags failed"
WORKER=$OUT/worker-build/bin/aihub-worker

# --- libnginx-mod-http-aihub -------------------------------------------------

M=$WORK/debian/$MOD
MDOC=$M/usr/share/doc/$MOD

install -D -m 0644 "$MODULE" "$M/usr/lib/nginx/modules/ngx_http_aihub_module.so"
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    "$M/usr/lib/nginx/modules/ngx_http_aihub_module.so"
install -D -m 0644 "$PKG/mod-http-aihub.conf" \
    "$M/usr/share/nginx/modules-available/mod-http-aihub.conf"

install -d "$MDOC/examples"
install -m 0644 "$PKG/copyright" "$MDOC/copyright"
gz "$WORK/debian/changelog" "$MDOC/changelog.Debian.gz"
# the directive reference: the README's operators' chapter
awk '/^## Configuration \(operators\)/ { p = 1 }
     /^## / && !/^## Configuration \(operators\)/ { p = 0 }
     p' "$REPO/README.md" > "$WORK/directives.md"
[ -s "$WORK/directives.md" ] \
    || die "README.md has no \"## Configuration (operators)\""
gz "$WORK/directives.md" "$MDOC/directives.md.gz"
install -m 0644 "$REPO/conf/nginx.conf" "$MDOC/examples/nginx.conf"

install -d "$M/DEBIAN"
for s in postinst prerm postrm; do
    install -m 0755 "$PKG/$MOD.$s" "$M/DEBIAN/$s"
done

# --- aihub-worker ------------------------------------------------------------

W=$WORK/debian/$WRK
WDOC=$W/usr/share/doc/$WRK

install -D -m 0755 "$WORKER" "$W/usr/bin/aihub-worker"
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
    "$W/usr/bin/aihub-worker"

install -d "$W/usr/share/aihub/sql"
install -m 0644 "$REPO"/sql/[0-9][0-9][0-9]_*.sql "$W/usr/share/aihub/sql/"

install -D -m 0644 "$REPO/conf/aihub-worker.conf" "$W/etc/aihub/worker.conf"
install -D -m 0644 "$PKG/aihub-worker.service" \
    "$W/lib/systemd/system/aihub-worker.service"

install -d "$W/usr/share/man/man1"
man_page "$VERSION" \
    "$(git -C "$REPO" log -1 --format=%cd --date=format:%Y-%m-%d)" \
    > "$WORK/aihub-worker.1"
gz "$WORK/aihub-worker.1" "$W/usr/share/man/man1/aihub-worker.1.gz"

install -d "$WDOC"
install -m 0644 "$PKG/copyright" "$WDOC/copyright"
gz "$WORK/debian/changelog" "$WDOC/changelog.Debian.gz"
gz "$REPO/README.md" "$WDOC/README.md.gz"

install -d "$W/DEBIAN"
for s in postinst prerm postrm; do
    install -m 0755 "$PKG/$WRK.$s" "$W/DEBIAN/$s"
done
echo /etc/aihub/worker.conf > "$W/DEBIAN/conffiles"
chmod 0644 "$W/DEBIAN/conffiles"

# --- control files and packages ----------------------------------------------

cd "$WORK"

# the module's nginx symbols come from the nginx binary, not a library:
# dpkg-shlibdeps is told not to look for them (warnings 0)
dpkg-shlibdeps --warnings=0 -T"debian/$MOD.substvars" \
    "debian/$MOD/usr/lib/nginx/modules/ngx_http_aihub_module.so"
dpkg-shlibdeps -T"debian/$WRK.substvars" "debian/$WRK/usr/bin/aihub-worker"

echo "nginx:abi=$ABI" >> "debian/$MOD.substvars"

for p in "$MOD" "$WRK"; do
    echo "misc:Depends=" >> "debian/$p.substvars"
    (cd "debian/$p" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' \
        | LC_ALL=C sort -z | xargs -0 md5sum > DEBIAN/md5sums)
    chmod 0644 "debian/$p/DEBIAN/md5sums"
    dpkg-gencontrol -p"$p" -P"debian/$p" -T"debian/$p.substvars"
    dpkg-deb --root-owner-group -Zxz --build "debian/$p" "$OUT/" >/dev/null
done

say "built $(cd "$OUT" && echo *.deb)"

for p in "$MOD" "$WRK"; do
    dpkg-deb -f "$OUT/${p}_${VERSION}_"*.deb Package Version Depends \
        | sed 's/^/    /' >&2
done

if command -v lintian >/dev/null; then
    say "lintian"
    # errors fail the build; warnings are shown (README: Install from
    # packages explains the ones we keep)
    lintian --tag-display-limit 0 "$OUT"/*.deb || die "lintian found errors"
else
    say "lintian is not installed: packages not checked" \
        "(apt-get install lintian)"
fi
