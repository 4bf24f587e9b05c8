# shellcheck shell=bash
# clickhouse_compat: a real ClickHouse 18.16 server (Debian bookworm's clickhouse-server package), the
# oldest server sluice's ClickHouse sink must still work against. Run by us, not by systemd/init.d,
# with our own config from dev/clickhouse_compat/ (loopback only, data under $DEV_DIR).
#
# Ports: SLUICE_DEV_CLICKHOUSE_COMPAT_PORT (HTTP, default 18124), SLUICE_DEV_CLICKHOUSE_COMPAT_TCP_PORT
# (native, default 19001). A default that is already taken is replaced by a free port; an explicitly
# set one is used as is.
# Secured endpoint (issue #15): HTTPS on SLUICE_DEV_CLICKHOUSE_COMPAT_HTTPS_PORT (default 18444) with
# the rig's certificate (dev/tls/tls.sh), and a user `sluice` with the rig's random password (secret
# clickhouse) next to the passwordless `default`.

CHC_HOME="$DEV_DIR/clickhouse_compat"
CHC_TEMPLATES="$ROOT/dev/clickhouse_compat"

# The package's server binary (a small launcher linked against clickhouse-common's libclickhouse.so).
# Beware: /etc/init.d/clickhouse-server's `stop` (also run by the package's prerm on a host with an
# init system) matches by this path, not by user, so it would stop our instance too.
CHC_BIN=/usr/sbin/clickhouse-server

# The HTTP URL of the server: its port is read back from the config the last start rendered (the
# source of truth, also when the default port was busy and a free one was picked), else the default.
_chc_url() {
  local port=""
  [[ -f "$CHC_HOME/etc/config.xml" ]] &&
    port="$(sed -n 's|.*<http_port>\([0-9]*\)</http_port>.*|\1|p' "$CHC_HOME/etc/config.xml")"
  echo "http://127.0.0.1:${port:-$(port_of SLUICE_DEV_CLICKHOUSE_COMPAT_PORT 18124)}"
}

# _chc_port VAR DEFAULT : $VAR if set, else DEFAULT unless something already listens there.
# The HTTPS URL, its port read back from the rendered config like _chc_url's.
_chc_https_url() {
  local port=""
  [[ -f "$CHC_HOME/etc/config.xml" ]] &&
    port="$(sed -n 's|.*<https_port>\([0-9]*\)</https_port>.*|\1|p' "$CHC_HOME/etc/config.xml")"
  echo "https://127.0.0.1:${port:-$(port_of SLUICE_DEV_CLICKHOUSE_COMPAT_HTTPS_PORT 18444)}"
}

_chc_port() {
  if [[ -n "${!1:-}" ]]; then echo "${!1}"; return; fi
  if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then free_port; else echo "$2"; fi
}

# _chc_query SQL : run SQL over HTTP, print the body; non-zero on an HTTP error (body on stderr).
_chc_query() {
  curl -sS --fail-with-body --max-time 5 --data-binary "$1" "$(_chc_url)/"
}

clickhouse_compat_install() {
  # --no-install-recommends (apt_install) skips clickhouse-client: HTTP + curl is all we need.
  # On a host *with* an init system the package's postinst also starts the system service on
  # 8123/9000 as user clickhouse; containers block that (policy-rc.d / no init), and we never use it.
  apt_install clickhouse-server curl
  [[ -x "$CHC_BIN" ]] || die "clickhouse_compat: $CHC_BIN missing after install"
}

clickhouse_compat_start() {
  # Already ours and alive: never launch a second one (it would overwrite the pid file and die on
  # the data dir's lock); just wait for it to answer.
  if is_running clickhouse_compat; then
    log "clickhouse_compat already running"
    wait_for clickhouse_compat 60; _chc_write_env "$(_chc_url)"; return 0
  fi
  local http tcp https pwhash
  http="$(_chc_port SLUICE_DEV_CLICKHOUSE_COMPAT_PORT 18124)"
  tcp="$(_chc_port SLUICE_DEV_CLICKHOUSE_COMPAT_TCP_PORT 19001)"
  https="$(_chc_port SLUICE_DEV_CLICKHOUSE_COMPAT_HTTPS_PORT 18444)"
  pwhash="$(printf '%s' "$(tls_secret clickhouse)" | sha256sum | cut -d' ' -f1)"

  # Config is re-rendered on every start so template edits and port changes take effect; data persists.
  mkdir -p "$CHC_HOME/etc"
  ram_data_dir clickhouse_compat >/dev/null
  sed -e "s|@HTTP_PORT@|$http|" -e "s|@TCP_PORT@|$tcp|" -e "s|@DATA_DIR@|$CHC_HOME/data|g" \
    -e "s|@HTTPS_PORT@|$https|" -e "s|@TLS_CERT@|$TLS_SERVER_CERT|" -e "s|@TLS_KEY@|$TLS_SERVER_KEY|" \
    "$CHC_TEMPLATES/config.xml" > "$CHC_HOME/etc/config.xml"
  (umask 077 && sed -e "s|@SLUICE_PASSWORD_SHA256@|$pwhash|" "$CHC_TEMPLATES/users.xml" > "$CHC_HOME/etc/users.xml")

  # Foreground (no --daemon, no --pid-file) so the pid start_bg records is the server itself.
  # Running as root is fine for 18.16 (checked): it has no user switch and the data dir is ours.
  log "starting clickhouse_compat (ClickHouse 18.16) http=$http tcp=$tcp https=$https"
  start_bg clickhouse_compat "$CHC_BIN" --config-file="$CHC_HOME/etc/config.xml"
  wait_for clickhouse_compat 60
  _chc_renice_merges "$(cat "$(pid_file clickhouse_compat)")"
  _chc_write_env "$(_chc_url)"
}

# Background merges at a lower CPU priority, like the chDB server's (newer ClickHouse has the
# server setting os_threads_nice_value_merge_mutate; 18.16 has not, so its merge pool's threads
# are reniced): on a small shared box merges then take the idle CPU instead of delaying inserts
# and queries. The pool starts with the first MergeTree table, so a probe table makes sure it is
# there. SLUICE_DEV_MERGE_NICE sets the value (0 = as the queries).
_chc_renice_merges() {
  local pid="$1" nice="${SLUICE_DEV_MERGE_NICE:-19}" n=0 t
  _chc_query "CREATE DATABASE IF NOT EXISTS sluice_dev" >/dev/null
  _chc_query "CREATE TABLE IF NOT EXISTS sluice_dev.merge_pool_probe (x UInt8) ENGINE = MergeTree ORDER BY x" >/dev/null
  for t in /proc/"$pid"/task/*; do
    [[ "$(cat "$t/comm" 2>/dev/null)" == BackgrProcPool ]] || continue
    renice -n "$nice" -p "${t##*/}" >/dev/null && n=$((n + 1))
  done
  log "clickhouse_compat: $n merge threads at nice $nice"
}

_chc_write_env() {
  cat > "$RUN_DIR/clickhouse_compat.env" <<EOF
export SLUICE_CLICKHOUSE_COMPAT_URL=$1
export SLUICE_DEV_CLICKHOUSE_HTTPS_URL=$(_chc_https_url)
export SLUICE_DEV_CLICKHOUSE_HTTPS_USER=sluice
export SLUICE_DEV_CLICKHOUSE_HTTPS_PASSWORD=$(tls_secret clickhouse)
EOF
}

# Healthy = /ping answers "Ok." and a real query runs, and over HTTPS (rig CA, user sluice) too.
clickhouse_compat_health() {
  [[ "$(curl -sS --max-time 2 "$(_chc_url)/ping" 2>/dev/null)" == "Ok." ]] || return 1
  [[ "$(_chc_query 'SELECT 1' 2>/dev/null)" == "1" ]] || return 1
  [[ "$(curl -sS --max-time 3 --cacert "$TLS_CA" -u "sluice:$(tls_secret clickhouse)" \
    "$(_chc_https_url)/?query=SELECT+1" 2>/dev/null)" == "1" ]]
}

clickhouse_compat_version() {
  # The live server's answer when it is up, else the installed package's version.
  _chc_query 'SELECT version()' 2>/dev/null \
    || dpkg-query -W -f='${Version} (package, not running)\n' clickhouse-server 2>/dev/null \
    || echo "not installed"
}

clickhouse_compat_endpoint() {
  echo "$(_chc_url) (ClickHouse 18.16 HTTP; HTTPS $(_chc_https_url), user sluice)"
}
