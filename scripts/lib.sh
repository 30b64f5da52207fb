# Shared shell helpers for scripts/test, scripts/demo and scripts/bench. Source it; don't run it.

# ensure_packages PKG... : installs Debian packages that are missing, without starting their
# services (tests and demos run private server instances on loopback ports).
ensure_packages() {
  local missing=()
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "imapshift: installing Debian packages: ${missing[*]}" >&2
  local made_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    # Keep the packages' own services (a system Dovecot on 143/993) from starting.
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  $sudo apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  [ $made_policy -eq 1 ] && $sudo rm -f /usr/sbin/policy-rc.d
  return 0
}

# ensure_cargo: Rust must be there (rustup.rs); we do not install toolchains behind your back.
ensure_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "imapshift: cargo is not installed: install Rust (https://rustup.rs), then run this again" >&2
    exit 2
  fi
}
