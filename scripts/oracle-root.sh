#!/usr/bin/env bash
# Build (once) and cache a Debian 13 root whose openssh-client is OpenSSH 10.0,
# the second oracle the config tests compare resolve(openssh="10.0") with.
#
#   bash scripts/oracle-root.sh [ROOT]      # default /var/cache/sshpipe-oracle/trixie
#
# Prints the root's path on success.  Exits 0 at once when the root is
# already there (marker file .sshpipe-ready); exits 2 with a reason on stderr
# when it cannot be built (not root, no debootstrap and no apt-get, no
# network to the Debian registry, or past the time bound SSHPIPE_ORACLE_TIMEOUT
# seconds, default 900).  Nothing outside ROOT is changed except installing
# debootstrap itself through apt-get when it is missing.
set -uo pipefail

ROOT=${1:-${SSHPIPE_ORACLE_ROOT:-/var/cache/sshpipe-oracle/trixie}}
SUITE=trixie
MIRROR=${SSHPIPE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
LIMIT=${SSHPIPE_ORACLE_TIMEOUT:-900}

fail() { echo "oracle-root: $*" >&2; exit 2; }

if [ -f "$ROOT/.sshpipe-ready" ] && [ -x "$ROOT/usr/bin/ssh" ] && [ -f "$ROOT/etc/services" ]; then
    echo "$ROOT"
    exit 0
fi
[ "$(id -u)" = 0 ] || fail "needs root (debootstrap and chroot)"
if ! command -v debootstrap >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || fail "no debootstrap and no apt-get to install it"
    timeout 300 apt-get install -y -qq debootstrap >/dev/null 2>&1 \
        || { timeout 300 apt-get update -qq >/dev/null 2>&1 \
             && timeout 300 apt-get install -y -qq debootstrap >/dev/null 2>&1; } \
        || fail "could not install debootstrap"
fi
[ -f "/usr/share/debootstrap/scripts/$SUITE" ] || fail "this debootstrap does not know $SUITE"

tmp="$ROOT.partial"
rm -rf "$tmp"
mkdir -p "$(dirname "$ROOT")" || fail "cannot create $(dirname "$ROOT")"
log="$(dirname "$ROOT")/debootstrap-$SUITE.log"
if ! timeout "$LIMIT" debootstrap --variant=minbase --include=openssh-client,netbase \
        "$SUITE" "$tmp" "$MIRROR" >"$log" 2>&1; then
    rm -rf "$tmp"
    fail "debootstrap $SUITE failed or took over ${LIMIT}s (log: $log)"
fi
version=$(chroot "$tmp" /usr/bin/ssh -V 2>&1) || { rm -rf "$tmp"; fail "ssh in the root does not run"; }
case "$version" in
    OpenSSH_10.0*) ;;
    *) rm -rf "$tmp"; fail "unexpected ssh in $SUITE: $version" ;;
esac
# the tests bind-mount their own passwd/hosts/resolv.conf over these
touch "$tmp/etc/hosts" "$tmp/etc/resolv.conf"
echo "$version" > "$tmp/.sshpipe-ready"
rm -rf "$ROOT"
mv "$tmp" "$ROOT" || fail "cannot move the root into place"
echo "$ROOT"
