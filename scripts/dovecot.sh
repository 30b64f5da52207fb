# shellcheck shell=bash
# Private Dovecot instances on loopback ports, for scripts/demo and scripts/bench. Source it; don't
# run it. The same recipe as tests/common/dovecot.rs, in bash.
#
#   dovecot_start NAME DIR PORT SEPARATOR LOGIN:PASSWORD...
#       Writes DIR/dovecot.conf (plain IMAP on 127.0.0.1:PORT only, ssl = no, the imaps listener
#       on port 0, TZ=UTC, maildir:~/Maildir with homes DIR/home/<login>, one inbox namespace
#       whose hierarchy separator is SEPARATOR, `.` or `/`), the passwd-file DIR/passwd, starts
#       `dovecot -F` in its own process group, waits for the `* OK` greeting (10 s) and records
#       the master's PID in DIR/dovecot.pid. Returns non-zero (with the log tail) on failure.
#       DOVECOT_EXTRA_CONF, if set, is appended to the config (later settings win).
#   dovecot_stop DIR         SIGTERM to the master, wait (SIGKILL after 10 s), then the same for
#                            whatever is left of its process group; idempotent.
#   dovecot_home DIR LOGIN   prints the user's home (the Maildir is HOME/Maildir).
#   dovecot_chown DIR        after writing mail into homes by hand: when root, gives DIR/home to
#                            the mail user (nobody); does nothing otherwise.
#   dovecot_doveadm DIR ARGS...  runs doveadm against the instance (e.g. `mailbox status`).
#   dovecot_free_port        prints a loopback TCP port that nothing listens on (20000-59999).
#
# Layout of DIR: dovecot.conf, passwd, run/ (base_dir: keep DIR short, unix socket paths are
# limited to ~108 bytes), state/, home/<login>/Maildir, dovecot.log, dovecot.stderr (where
# configuration errors go), dovecot.pid.
#
# As root, Dovecot refuses to run mail processes as uid 0: every user is mapped to `nobody` and
# the homes are chowned to it. As another user, everything runs as that user without chroots.

DOVECOT_BIN="${DOVECOT_BIN:-/usr/sbin/dovecot}"

# uid and gid (as "uid gid") that own the mail.
_dovecot_mail_ids() {
  if [ "$(id -u)" -eq 0 ]; then
    local ids
    ids=$(awk -F: '$1 == "nobody" { print $3, $4; exit }' /etc/passwd)
    echo "${ids:-65534 65534}"
  else
    echo "$(id -u) $(id -g)"
  fi
}

# Live (non-zombie) members of process group $1, one PID a line.
_dovecot_group() {
  local pg=$1 f line state pgrp
  for f in /proc/[0-9]*/stat; do
    line=$(cat "$f" 2>/dev/null) || continue
    # "pid (comm) state ppid pgrp ...": comm may contain spaces and parens.
    read -r state _ pgrp _ <<<"${line##*) }"
    [ "$pgrp" = "$pg" ] && [ "$state" != Z ] && [ "$state" != X ] && echo "${f//[!0-9]/}"
  done
  return 0
}

# Waits up to $2 seconds for process group $1 to be empty; returns 1 if it is not.
_dovecot_wait_group() {
  local pg=$1 tries=$(($2 * 10))
  while [ "$tries" -gt 0 ]; do
    [ -z "$(_dovecot_group "$pg")" ] && return 0
    sleep 0.1
    tries=$((tries - 1))
  done
  [ -z "$(_dovecot_group "$pg")" ]
}

# True if something greets with "* OK" on 127.0.0.1:$1.
_dovecot_greets() {
  local port=$1 line="" fd
  { exec {fd}<>"/dev/tcp/127.0.0.1/$port"; } 2>/dev/null || return 1
  read -r -t 2 line <&"$fd" || true
  printf 'x LOGOUT\r\n' 1>&"$fd" 2>/dev/null || true
  exec {fd}>&-
  [[ "$line" == "* OK"* ]]
}

dovecot_free_port() {
  local p tries=200
  while [ "$tries" -gt 0 ]; do
    tries=$((tries - 1))
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
    # Free if nothing accepts a connection there.
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  echo "dovecot_free_port: no free port found" >&2
  return 1
}

dovecot_home() {
  echo "$1/home/$2"
}

dovecot_chown() {
  local dir=$1 uid gid
  [ "$(id -u)" -eq 0 ] || return 0
  read -r uid gid < <(_dovecot_mail_ids)
  chown -R "$uid:$gid" "$dir/home"
}

dovecot_doveadm() {
  local dir=$1
  shift
  doveadm -c "$dir/dovecot.conf" "$@"
}

dovecot_start() {
  if [ $# -lt 4 ]; then
    echo "usage: dovecot_start NAME DIR PORT SEPARATOR LOGIN:PASSWORD..." >&2
    return 2
  fi
  local name=$1 dir=$2 port=$3 sep=$4
  shift 4
  case "$sep" in
    . | /) ;;
    *) echo "dovecot_start: SEPARATOR must be . or /, not $sep" >&2; return 2 ;;
  esac
  if [ ! -x "$DOVECOT_BIN" ]; then
    echo "dovecot_start: $DOVECOT_BIN not found: install Debian's dovecot-imapd" >&2
    return 2
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ ${#dir} -gt 70 ]; then
    echo "dovecot_start: $dir is too long for Dovecot's unix sockets; use a shorter path" >&2
    return 2
  fi
  # Mail processes run as an unprivileged user and must traverse it.
  chmod 755 "$dir"
  mkdir -p "$dir/run" "$dir/state" "$dir/home"
  local uid gid
  read -r uid gid < <(_dovecot_mail_ids)

  # passwd-file: {PLAIN}secret when unambiguous, else {PLAIN.hex}.
  : >"$dir/passwd"
  chmod 644 "$dir/passwd"
  local u login pw
  for u in "$@"; do
    login=${u%%:*}
    pw=${u#*:}
    if [ -z "$login" ] || [ "$login" = "$u" ] || [[ "$login" =~ [[:space:]/:] ]]; then
      echo "dovecot_start: bad user $u (want login:password)" >&2
      return 2
    fi
    if [ -n "$pw" ] && [[ "$pw" != *[:[:space:][:cntrl:]]* ]]; then
      printf '%s:{PLAIN}%s\n' "$login" "$pw" >>"$dir/passwd"
    else
      printf '%s:{PLAIN.hex}%s\n' "$login" "$(printf '%s' "$pw" | od -An -tx1 | tr -d ' \n')" >>"$dir/passwd"
    fi
    mkdir -p "$dir/home/$login"
  done
  if [ "$(id -u)" -eq 0 ]; then
    chown "$uid:$gid" "$dir/home"
    for u in "$@"; do chown "$uid:$gid" "$dir/home/${u%%:*}"; done
  fi

  local instance chroot="" nonroot=""
  instance=$(printf '%s' "$name" | tr -cd 'A-Za-z0-9_-' | cut -c1-24)
  if [ "$(id -u)" -ne 0 ]; then
    local user group
    user=$(awk -F: -v id="$uid" '$3 == id { print $1; exit }' /etc/passwd)
    group=$(awk -F: -v id="$gid" '$3 == id { print $1; exit }' /etc/group)
    if [ -z "$user" ]; then
      echo "dovecot_start: uid $uid has no /etc/passwd entry; dovecot needs one" >&2
      return 2
    fi
    chroot="  chroot ="
    nonroot="first_valid_uid = $((uid < 500 ? uid : 500))
default_login_user = $user
default_internal_user = $user
default_internal_group = ${group:-$user}
service anvil {
  chroot =
}"
  fi
  cat >"$dir/dovecot.conf" <<EOF
# Generated by scripts/dovecot.sh for instance "$name"
protocols = imap
listen = 127.0.0.1
base_dir = $dir/run
state_dir = $dir/state
instance_name = dv-$instance
log_path = $dir/dovecot.log
import_environment = TZ=UTC
auth_verbose = yes
auth_mechanisms = plain login
disable_plaintext_auth = no
ssl = no
mail_location = maildir:~/Maildir
namespace inbox {
  inbox = yes
  separator = $sep
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/passwd
}
userdb {
  driver = static
  args = uid=$uid gid=$gid home=$dir/home/%u
}
service imap-login {
$chroot
  inet_listener imap {
    port = $port
  }
  inet_listener imaps {
    port = 0
  }
}
$nonroot
${DOVECOT_EXTRA_CONF:-}
EOF

  if _dovecot_greets "$port"; then
    echo "dovecot_start: something already answers on 127.0.0.1:$port" >&2
    return 1
  fi
  # Own process group (setsid): dovecot_stop can sweep the imap processes the master leaves.
  setsid "$DOVECOT_BIN" -F -c "$dir/dovecot.conf" </dev/null >>"$dir/dovecot.stderr" 2>&1 &
  local pid=$! tries=100
  echo "$pid" >"$dir/dovecot.pid"
  while [ "$tries" -gt 0 ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "dovecot_start: dovecot $name exited during startup; $dir/dovecot.log and dovecot.stderr say:" >&2
      tail -n 20 "$dir/dovecot.log" "$dir/dovecot.stderr" >&2 2>/dev/null
      rm -f "$dir/dovecot.pid"
      return 1
    fi
    if _dovecot_greets "$port"; then
      # The master writes its own PID; prefer it (setsid may have forked under job control).
      [ -s "$dir/run/master.pid" ] && cat "$dir/run/master.pid" >"$dir/dovecot.pid"
      return 0
    fi
    sleep 0.1
    tries=$((tries - 1))
  done
  echo "dovecot_start: no greeting from dovecot $name on 127.0.0.1:$port within 10 s" >&2
  tail -n 20 "$dir/dovecot.log" "$dir/dovecot.stderr" >&2 2>/dev/null
  dovecot_stop "$dir"
  return 1
}

dovecot_stop() {
  local dir=$1 pid
  [ -s "$dir/dovecot.pid" ] || return 0
  pid=$(cat "$dir/dovecot.pid")
  if ! [[ "$pid" =~ ^[0-9]+$ ]] || [ "$pid" -le 1 ]; then
    echo "dovecot_stop: bad PID in $dir/dovecot.pid" >&2
    return 1
  fi
  kill -TERM "$pid" 2>/dev/null || true
  local tries=100
  while [ "$tries" -gt 0 ] && kill -0 "$pid" 2>/dev/null \
    && [ "$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$pid/stat" 2>/dev/null)" != Z ]; do
    sleep 0.1
    tries=$((tries - 1))
  done
  if [ "$tries" -eq 0 ]; then
    echo "dovecot_stop: master $pid ignored SIGTERM for 10 s, sending SIGKILL" >&2
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  # Reap it if it is our child (no-op otherwise).
  wait "$pid" 2>/dev/null || true
  # The master does not wait for imap processes that still have a client.
  if [ -n "$(_dovecot_group "$pid")" ]; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    if ! _dovecot_wait_group "$pid" 5; then
      kill -KILL -- "-$pid" 2>/dev/null || true
      if ! _dovecot_wait_group "$pid" 5; then
        echo "dovecot_stop: processes of group $pid survived: $(_dovecot_group "$pid" | tr '\n' ' ')" >&2
        return 1
      fi
    fi
  fi
  rm -f "$dir/dovecot.pid"
  return 0
}
