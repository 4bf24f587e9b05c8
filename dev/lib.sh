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
SERVICES=(kafka registry couchbase clickhouse clickhouse_compat postgres connect)

log() { printf '[dev] %s\n' "$*" >&2; }
die() { printf '[dev] error: %s\n' "$*" >&2; exit 1; }

pid_file() { echo "$RUN_DIR/$1.pid"; }

# 0 when the process recorded for service $1 is alive.
is_running() {
  local f; f="$(pid_file "$1")"
  [[ -f "$f" ]] && kill -0 "$(cat "$f")" 2>/dev/null
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

# wait_for SVC SECONDS : poll <svc>_health until it answers or the deadline passes; fail with the
# tail of the service's log so the reason is on screen.
wait_for() {
  local svc="$1" secs="$2" i
  for ((i = 0; i < secs * 2; i++)); do
    if "${svc}_health" >/dev/null 2>&1; then return 0; fi
    if ! is_running "$svc"; then
      tail -n 40 "$LOG_DIR/$svc.log" >&2 || true
      die "$svc exited during start-up (log: $LOG_DIR/$svc.log)"
    fi
    sleep 0.5
  done
  tail -n 40 "$LOG_DIR/$svc.log" >&2 || true
  die "$svc did not become healthy within ${secs}s (log: $LOG_DIR/$svc.log)"
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

# write_env WHO : $DEV_DIR/env from the endpoints of every service still running (removed when
# none is).
write_env() {
  local svc lines=""
  for svc in "${SERVICES[@]}"; do
    if [[ -f "$RUN_DIR/$svc.env" ]] && is_running "$svc"; then lines+="$(cat "$RUN_DIR/$svc.env")"$'\n'; fi
  done
  if [[ -z $lines ]]; then rm -f "$DEV_DIR/env"; return 0; fi
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
