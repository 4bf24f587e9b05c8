# shellcheck shell=bash
# Shared helpers for the dev/ scripts. Sourced, never executed.
#
# Layout (all state lives under $DEV_DIR, ignored by git, so a fresh clone starts clean):
#   $DEV_DIR/<service>/      installed software and data of one service
#   $DEV_DIR/run/<svc>.pid   pid of the process `dev/up` started (the only thing `dev/down` kills)
#   $DEV_DIR/run/<svc>.env   `export SLUICE_...=...` lines the service contributes to $DEV_DIR/env
#   $DEV_DIR/log/<svc>.log   the service's stdout/stderr
#   $DEV_DIR/env             every endpoint, read by the tests, the CLI and the demo
#
# Each service is a file dev/services/<svc>.sh defining five functions:
#   <svc>_install   idempotent; installs what is missing (first run), quiet when already there
#   <svc>_start     starts the process in the background (pid file above), waits for health,
#                   writes $DEV_DIR/run/<svc>.env
#   <svc>_health    0 when a real request to the running service answers correctly
#   <svc>_version   prints the version of the installed software
#   <svc>_endpoint  prints the endpoint(s) for `dev/status`
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEV_DIR="${SLUICE_DEV_DIR:-$ROOT/.dev}"
RUN_DIR="$DEV_DIR/run"
LOG_DIR="$DEV_DIR/log"
mkdir -p "$RUN_DIR" "$LOG_DIR"

# Every service of the rig, in start order.
SERVICES=(kafka registry registry_tls couchbase clickhouse clickhouse_compat postgres connect)

log() { printf '[dev] %s\n' "$*" >&2; }
die() { printf '[dev] error: %s\n' "$*" >&2; exit 1; }

pid_file() { echo "$RUN_DIR/$1.pid"; }

# pid_alive PID : 0 when PID is a live process that start_bg started. Not `kill -0`, which also
# succeeds on a zombie: a service is an orphan of PID 1 once dev/up exits, and this machine's PID 1
# (a VM agent, not an init) reaps orphans only every second or so. Right after a SIGKILL `dev/up`
# saw the zombie as running, waited for its health, saw it vanish and died with its message sent
# to /dev/null: exit 1, no output, service down. Also false for a pid reused by another process:
# start_bg makes each service a session leader (setsid), so its session id is its pid.
pid_alive() {
  local stat state sid
  [[ ${1:-} =~ ^[0-9]+$ ]] || return 1
  stat="$(cat "/proc/$1/stat" 2>/dev/null)" || return 1
  # Fields after the command name (which may hold spaces): state ppid pgrp session ...
  read -r state _ _ sid _ <<<"${stat##*) }"
  [[ $state != [ZX] && $sid == "$1" ]]
}

# 0 when the process recorded for service $1 is alive (see pid_alive).
is_running() {
  local f; f="$(pid_file "$1")"
  [[ -f "$f" ]] && pid_alive "$(cat "$f")"
}

# Why service $1 counts as stopped, for messages: no pid file, a dead pid, a zombie or a reused pid.
stopped_why() {
  local f pid state; f="$(pid_file "$1")"
  [[ -f "$f" ]] || { echo "no pid file $f"; return; }
  pid="$(cat "$f")"
  state="$(sed -n 's/.*) \([A-Z]\).*/\1/p' "/proc/$pid/stat" 2>/dev/null || true)"
  case "$state" in
    "") echo "pid $pid is gone" ;;
    Z|X) echo "pid $pid is dead (a zombie not reaped yet)" ;;
    *) echo "pid $pid now belongs to another process ($(cat "/proc/$pid/comm" 2>/dev/null))" ;;
  esac
}

# start_bg SVC CMD... : run CMD detached in its own session, stdout+stderr to the service log.
# A log past 64 MiB is moved to <svc>.log.1 first (one old log kept): a broker that served many
# test runs otherwise writes hundreds of MB.
start_bg() {
  local svc="$1"; shift
  local logf="$LOG_DIR/$svc.log"
  if [[ -f "$logf" ]] && (( $(stat -c %s "$logf") > 64 * 1024 * 1024 )); then
    mv -f "$logf" "$logf.1"
  fi
  setsid "$@" >>"$logf" 2>&1 < /dev/null &
  echo $! > "$(pid_file "$svc")"
}

# await_health SVC SECONDS [CMD...] : poll CMD (default <svc>_health) until it answers (0), or
# the process is gone or the deadline passes (1, the reason in $HEALTH_WHY). Never exits.
HEALTH_WHY=""
await_health() {
  local svc="$1" secs="$2" i; shift 2
  [[ $# -gt 0 ]] || set -- "${svc}_health"
  for ((i = 0; i < secs * 2; i++)); do
    if "$@" >/dev/null 2>&1; then HEALTH_WHY=""; return 0; fi
    if ! is_running "$svc"; then
      HEALTH_WHY="$svc exited during start-up ($(stopped_why "$svc"))"
      return 1
    fi
    sleep 0.5
  done
  HEALTH_WHY="$svc did not become healthy within ${secs}s"
  return 1
}

# wait_for SVC SECONDS [CMD...] : await_health, failing with the reason and the tail of the
# service's log so it is on screen.
wait_for() {
  await_health "$@" && return 0
  tail -n 40 "$LOG_DIR/$1.log" >&2 || true
  die "$HEALTH_WHY (log: $LOG_DIR/$1.log)"
}

# stop_service SVC GRACE [SVC GRACE ...] : SIGTERM to the process group of each service (dev/up
# starts each in its own session, so its pid is the group: helper processes go too), all at
# once, then wait up to its GRACE seconds for each and SIGKILL what is left. Removes the pid and
# env files. Logs what it did; quiet for services that were not running.
stop_service() {
  local -a svcs=() graces=() pids=()
  local i svc pid
  while [[ $# -ge 2 ]]; do svcs+=("$1"); graces+=("$2"); shift 2; done
  for i in "${!svcs[@]}"; do
    svc="${svcs[i]}"; pids[i]=""
    is_running "$svc" || continue
    pids[i]="$(cat "$(pid_file "$svc")")"
    kill -TERM -- -"${pids[i]}" 2>/dev/null || kill -TERM "${pids[i]}" 2>/dev/null || true
  done
  for i in "${!svcs[@]}"; do
    svc="${svcs[i]}"; pid="${pids[i]}"
    if [[ -n $pid ]]; then
      for _ in $(seq 1 $((graces[i] * 4))); do pid_alive "$pid" || break; sleep 0.25; done
      if pid_alive "$pid"; then
        log "$svc (pid $pid) ignored SIGTERM for ${graces[i]}s; sending SIGKILL"
        kill -KILL -- -"$pid" 2>/dev/null || true
      fi
      log "$svc stopped (pid $pid)"
    fi
    rm -f "$(pid_file "$svc")" "$RUN_DIR/$svc.env"
  done
}

# apt_install PKG... : install Debian packages that are missing (runs `apt-get update` once).
apt_install() {
  local missing=() p
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "apt-get install ${missing[*]}"
  local sudo=""; [[ $(id -u) -ne 0 ]] && sudo="sudo"
  $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# write_env WHO : $DEV_DIR/env from the endpoints of every service still running, plus the TLS
# material's files (dev/tls/tls.sh) (removed when no service is running).
write_env() {
  local svc lines=""
  for svc in "${SERVICES[@]}"; do
    if [[ -f "$RUN_DIR/$svc.env" ]] && is_running "$svc"; then lines+="$(cat "$RUN_DIR/$svc.env")"$'\n'; fi
  done
  if [[ -z $lines ]]; then rm -f "$DEV_DIR/env"; return 0; fi
  [[ -f "$TLS_DIR/env" ]] && lines="$(cat "$TLS_DIR/env")"$'\n'"$lines"
  printf '# Written by %s %s. Source it: . .dev/env\n%s' "$1" "$(date -u +%FT%TZ)" "$lines" > "$DEV_DIR/env"
}

# A free TCP port on 127.0.0.1 (used only when the default one is taken).
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# port_of VAR DEFAULT : the value of $VAR when set, else DEFAULT.
port_of() { local v="${!1:-}"; echo "${v:-$2}"; }

# ram_data_dir NAME: makes $DEV_DIR/NAME/data a link to a directory in RAM (/dev/shm) and prints
# the link. For the ClickHouse servers: on this kind of machine ext4 spends most of an insert's
# time finding free inodes for the new part's files (perf: ~65% of ClickHouse 18.16's CPU in
# find_inode_bit / recently_deleted, inserts 5x slower than in RAM). The price: the data is gone
# after a reboot (dev/up makes the directory again; `sluice clickhouse migrate` the tables).
# SLUICE_DEV_DATA_ON_DISK=1 keeps it on disk. Data already on disk is moved over once.
ram_data_dir() {
  local link="$DEV_DIR/$1/data" target
  mkdir -p "$DEV_DIR/$1"
  if [[ "${SLUICE_DEV_DATA_ON_DISK:-0}" == 1 || ! -w /dev/shm ]]; then
    [[ -L "$link" ]] && rm -f "$link"
    mkdir -p "$link"
  else
    target="/dev/shm/sluice-$(printf '%s' "$DEV_DIR" | sha256sum | cut -c1-12)/$1"
    mkdir -p "$target"
    if [[ -d "$link" && ! -L "$link" ]]; then
      log "$1: moving its data to RAM ($target)"
      cp -a "$link/." "$target/" && rm -rf "$link"
    fi
    ln -sfn "$target" "$link"
  fi
  echo "$link"
}

# The rig's CA, certificates and secrets for the secured endpoints (tls_ensure, tls_secret).
# shellcheck source=dev/tls/tls.sh
source "$ROOT/dev/tls/tls.sh"
