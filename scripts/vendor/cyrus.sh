#!/usr/bin/env bash
# Cyrus IMAP 3.6 for the tests (tests/common/cyrus.rs), without installing Debian's cyrus-imapd:
# that package Conflicts with dovecot-imapd (both Provide imap-server), and its postinst would
# pull in an MTA and start services. So we download cyrus-common and cyrus-imapd with
# `apt-get download`, unpack them with `dpkg-deb -x` into a private prefix (no maintainer
# scripts run, no service starts), and install with apt only the libraries their binaries link
# against (none of which conflicts with anything) plus sasl2-bin for saslpasswd2.
#
#   scripts/vendor/cyrus.sh install   installs (idempotent: a complete prefix is reused), then
#                                     prints the prefix on stdout
#   scripts/vendor/cyrus.sh prefix    prints where the prefix is (installed or not)
#
# The prefix is $IMAPSHIFT_CYRUS_PREFIX, default /var/cache/imapshift/cyrus-3.6 as root (the
# tests' Cyrus runs as `mail`, which cannot enter /root) and $HOME/.cache/imapshift/cyrus-3.6
# otherwise; the tests find it the same way. What this does is said on stderr; exit 0 means
# ready.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/lib.sh

SERIES=3.6
PACKAGES=(cyrus-common cyrus-imapd)
# Libraries that master and imapd link against beyond what a Debian base system has, the SASL
# plugins (sasldb auxprop, PLAIN/LOGIN), and saslpasswd2.
LIBS=(libsasl2-2 libsasl2-modules libsasl2-modules-db sasl2-bin libical3 libpcre3 libxapian30
  libwrap0 libjansson4 libicu72 libxml2 libsqlite3-0 libpq5 libldap-2.5-0 libkrb5-3 libcom-err2
  libssl3 zlib1g)
# The binaries the harness runs; each must resolve every library.
BINARIES=(usr/lib/cyrus/bin/master usr/lib/cyrus/bin/imapd usr/lib/cyrus/bin/mbpath
  usr/lib/cyrus/bin/ctl_cyrusdb usr/lib/cyrus/bin/reconstruct)
MARKER=.imapshift-complete

say() { echo "cyrus.sh: $*" >&2; }

prefix() {
  if [ -n "${IMAPSHIFT_CYRUS_PREFIX:-}" ]; then
    echo "$IMAPSHIFT_CYRUS_PREFIX"
  elif [ "$(id -u)" -eq 0 ]; then
    echo "/var/cache/imapshift/cyrus-$SERIES"
  else
    echo "${HOME:?HOME is not set}/.cache/imapshift/cyrus-$SERIES"
  fi
}

# check_prefix DIR: every binary is there and resolves its libraries.
check_prefix() {
  local dir=$1 b missing
  for b in "${BINARIES[@]}"; do
    [ -x "$dir/$b" ] || { say "$dir/$b is missing"; return 1; }
    missing=$(LD_LIBRARY_PATH="$dir/usr/lib/x86_64-linux-gnu" ldd "$dir/$b" | grep 'not found' || true)
    [ -z "$missing" ] || { say "$b lacks libraries: $missing"; return 1; }
  done
}

download() {
  local into=$1
  # As root, apt's download sandbox user (_apt) cannot write into a private temp dir.
  local sandbox=()
  [ "$(id -u)" -ne 0 ] || sandbox=(-o APT::Sandbox::User=root)
  if ! (cd "$into" && apt-get download -q "${sandbox[@]}" "${PACKAGES[@]}" >&2); then
    say "apt-get download failed; refreshing the package lists and retrying"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -q >&2
    (cd "$into" && apt-get download -q "${sandbox[@]}" "${PACKAGES[@]}" >&2)
  fi
}

install() {
  local dir
  dir=$(prefix)
  ensure_packages "${LIBS[@]}"
  if [ -f "$dir/$MARKER" ] && check_prefix "$dir"; then
    say "reusing $dir ($(cat "$dir/$MARKER"))"
    echo "$dir"
    return 0
  fi
  say "installing Cyrus IMAP $SERIES into $dir (apt-get download + dpkg-deb -x; nothing is started)"
  mkdir -p "$(dirname "$dir")"
  WORK=$(mktemp -d "$(dirname "$dir")/.cyrus-install.XXXXXX")
  trap 'rm -rf "$WORK"' EXIT
  local work=$WORK
  mkdir "$work/debs" "$work/prefix"
  download "$work/debs"
  local deb versions=""
  for deb in "$work"/debs/*.deb; do
    local version
    version=$(dpkg-deb -f "$deb" Version)
    case "$version" in
      "$SERIES".*) ;;
      *) say "$(basename "$deb") is version $version, not Cyrus $SERIES: the tests are written for $SERIES"; exit 1 ;;
    esac
    say "unpacking $(basename "$deb")"
    dpkg-deb -x "$deb" "$work/prefix"
    versions="$versions $(dpkg-deb -f "$deb" Package)=$version"
  done
  check_prefix "$work/prefix" || { say "the unpacked prefix is incomplete"; exit 1; }
  echo "${versions# }" >"$work/prefix/$MARKER"
  # Anyone (the tests' Cyrus runs as `mail`) must read and run the prefix.
  chmod 755 "$work/prefix"
  rm -rf "$dir"
  mv "$work/prefix" "$dir"
  say "installed ${versions# } into $dir"
  echo "$dir"
}

case "${1:-}" in
  install) install ;;
  prefix) prefix ;;
  *) echo "usage: $0 install|prefix" >&2; exit 2 ;;
esac
