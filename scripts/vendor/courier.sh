#!/usr/bin/env bash
# Courier-IMAP 5.0 for the cross-vendor tests (tests/common/courier.rs), from Debian's packages,
# UNPACKED into a prefix, never installed: Debian's courier-imap, dovecot-imapd and cyrus-imapd
# each Provide and Conflict with `imap-server`, and Courier's postinst scripts would pull in an
# MTA and start services. So this downloads the .debs (`apt-get download`), unpacks them with
# `dpkg-deb -x` into the prefix, and installs with apt only their library dependencies (which
# conflict with nothing). It never starts a service and writes nothing outside the prefix but
# those libraries.
#
#   scripts/vendor/courier.sh install   idempotent: reuses a complete prefix
#   scripts/vendor/courier.sh prefix    prints the prefix
#
# The prefix is $IMAPSHIFT_COURIER_PREFIX, default $HOME/.cache/imapshift/courier-5.0 (the test
# harness looks in the same place). It is complete when it holds `.imapshift-complete` (the
# package versions), written last; an incomplete one is removed and made again.
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
. "$here/scripts/lib.sh"

prefix="${IMAPSHIFT_COURIER_PREFIX:-$HOME/.cache/imapshift/courier-5.0}"
marker="$prefix/.imapshift-complete"
# The packages to unpack: imapd + imaplogin (courier-imap), couriertcpd + maildirmake
# (courier-base), authdaemond + libcourierauth (courier-authlib), the userdb module, userdbpw
# and makeuserdb (courier-authlib-userdb).
debs=(courier-imap courier-base courier-authlib courier-authlib-userdb)
# Their library dependencies (from `dpkg-deb -I`), plus what the harness runs: perl for
# makeuserdb, unshare and mount for the private mount namespace.
libs=(libcourier-unicode4 libgdbm6 libidn12 libltdl7 libgamin0 libcrypt1 libpam0g perl
  util-linux mount)
# Files the harness runs; their absence means a package changed shape.
required=(usr/bin/imapd usr/lib/courier/courier/imaplogin usr/sbin/couriertcpd
  usr/lib/courier/courier-authlib/authdaemond usr/lib/courier-authlib/libauthuserdb.so.0
  usr/lib/courier/courier-authlib/makedatprog usr/sbin/makeuserdb usr/sbin/userdbpw
  usr/bin/maildirmake.courier etc/courier/imapd)

say() { echo "courier.sh: $*" >&2; }

candidate() {
  apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }'
}

# The unpacked binaries must find every library: the prefix's own, then the system's.
check_libraries() {
  local dir="$1" missing
  missing=$(cd "$dir" && for f in "${required[@]}"; do
    case "$f" in etc/*|usr/sbin/makeuserdb) continue ;; esac
    LD_LIBRARY_PATH="$dir/usr/lib:$dir/usr/lib/courier-authlib" ldd "$f" | grep 'not found' |
      sed "s|^|$f: |"
  done)
  if [ -n "$missing" ]; then
    say "libraries missing for the unpacked Courier (install them with apt):"
    echo "$missing" >&2
    exit 1
  fi
}

install() {
  ensure_packages "${libs[@]}"
  if [ -f "$marker" ]; then
    check_libraries "$prefix"
    say "Courier already unpacked in $prefix: $(paste -sd, "$marker")"
    return 0
  fi
  if [ -z "$(candidate courier-imap)" ] || [ "$(candidate courier-imap)" = "(none)" ]; then
    say "apt knows no courier-imap: running apt-get update"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q >&2
  fi
  local version
  version=$(candidate courier-imap)
  case "$version" in
    5.0.*) ;;
    *) say "apt offers courier-imap $version, not 5.0.*: the harness is for Debian bookworm's Courier-IMAP 5.0"
       exit 1 ;;
  esac
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # apt drops privileges to _apt for downloads: let it write there.
  if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then chown _apt "$work"; fi
  say "downloading ${debs[*]} (courier-imap $version) into $work"
  (cd "$work" && apt-get download -q "${debs[@]}" >&2)
  local stage="$prefix.partial.$$"
  rm -rf "$prefix" "$stage"
  mkdir -p "$stage"
  local deb
  for deb in "$work"/*.deb; do
    say "unpacking $(basename "$deb") into $prefix"
    dpkg-deb -x "$deb" "$stage"
    dpkg-deb --showformat='${Package} ${Version}\n' -W "$deb" >> "$stage/.versions"
  done
  local f
  for f in "${required[@]}"; do
    [ -e "$stage/$f" ] || { say "$f is not in the unpacked packages"; exit 1; }
  done
  check_libraries "$stage"
  mv "$stage/.versions" "$stage/.imapshift-complete"
  mv "$stage" "$prefix"
  say "Courier-IMAP $version unpacked in $prefix"
}

case "${1:-}" in
  install) install ;;
  prefix) echo "$prefix" ;;
  *) echo "usage: $0 install|prefix" >&2; exit 2 ;;
esac
