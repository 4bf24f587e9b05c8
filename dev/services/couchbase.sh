# shellcheck shell=bash
# Couchbase: gocaves, Couchbase's own mock cluster (KV/memcached binary protocol, cluster manager
# HTTP, collections), built from its Go module source by dev/couchbase/build.sh.
# Two nodes, bucket `default`, user Administrator/password; it picks random ports on every start
# and prints the connection string (a {"connstr":...} JSON line) on stderr, i.e. into the log.
# Data lives in memory only: every start is an empty cluster.
# Secured endpoint (issue #15): every node also has TLS listeners (kvSSL, mgmtSSL, ... in the
# cluster config's nodesExt; random ports too) presenting the rig's server certificate
# (dev/tls/tls.sh, passed as GOCAVES_TLS_CERT/GOCAVES_TLS_KEY, see dev/couchbase/build.sh):
# SLUICE_DEV_COUCHBASE_TLS_CONNSTR=couchbases://127.0.0.1:<kvSSL node 1>,127.0.0.1:<kvSSL node 2>,
# same user and bucket, CA $SLUICE_DEV_TLS_CA_FILE.

# Only v0.0.1-75 is served by the Go module proxy (v0.0.1-76..79 answer 403 "not available").
COUCHBASE_GOCAVES_VERSION="v0.0.1-75"
# Bump when dev/couchbase/build.sh changes what it builds, so installed binaries are rebuilt.
COUCHBASE_BUILD_STAMP="gocaves $COUCHBASE_GOCAVES_VERSION (sluice build 2)"
COUCHBASE_DIR="$DEV_DIR/couchbase"
COUCHBASE_BIN="$COUCHBASE_DIR/gocaves"
COUCHBASE_STATE="$COUCHBASE_DIR/state" # CONNSTR= MGMT_PORT= TLS_CONNSTR= MGMT_SSL_PORT= of the running instance
COUCHBASE_USER="Administrator"
COUCHBASE_PASS="password"
COUCHBASE_BUCKET="default"

couchbase_install() {
  if [[ -x "$COUCHBASE_BIN" && "$(cat "$COUCHBASE_DIR/VERSION" 2>/dev/null)" == "$COUCHBASE_BUILD_STAMP" ]]; then
    return 0
  fi
  if ! command -v go >/dev/null 2>&1; then
    if [[ -x /usr/local/go/bin/go ]]; then
      export PATH="/usr/local/go/bin:$PATH"
    else
      apt_install golang-go ca-certificates
    fi
  fi
  command -v python3 >/dev/null 2>&1 || apt_install python3
  log "building gocaves $COUCHBASE_GOCAVES_VERSION (go mod download + go build)"
  bash "$ROOT/dev/couchbase/build.sh" "$COUCHBASE_GOCAVES_VERSION" "$COUCHBASE_DIR" "$COUCHBASE_BUILD_STAMP" \
    || die "couchbase: building gocaves failed"
}

# Reads CONNSTR, MGMT_PORT, TLS_CONNSTR and MGMT_SSL_PORT of the running instance into the
# caller's scope.
_couchbase_state() {
  [[ -f "$COUCHBASE_STATE" ]] || return 1
  CONNSTR="$(sed -n 's/^CONNSTR=//p' "$COUCHBASE_STATE")"
  MGMT_PORT="$(sed -n 's/^MGMT_PORT=//p' "$COUCHBASE_STATE")"
  TLS_CONNSTR="$(sed -n 's/^TLS_CONNSTR=//p' "$COUCHBASE_STATE")"
  MGMT_SSL_PORT="$(sed -n 's/^MGMT_SSL_PORT=//p' "$COUCHBASE_STATE")"
  [[ -n "$CONNSTR" && -n "$MGMT_PORT" && -n "$TLS_CONNSTR" && -n "$MGMT_SSL_PORT" ]]
}

_couchbase_write_env() {
  local CONNSTR MGMT_PORT TLS_CONNSTR MGMT_SSL_PORT
  _couchbase_state || die "couchbase: no state file $COUCHBASE_STATE"
  cat >"$RUN_DIR/couchbase.env" <<EOF
export SLUICE_COUCHBASE_CONNSTR=$CONNSTR
export SLUICE_DEV_COUCHBASE_TLS_CONNSTR=$TLS_CONNSTR
export SLUICE_COUCHBASE_USERNAME=$COUCHBASE_USER
export SLUICE_COUCHBASE_PASSWORD=$COUCHBASE_PASS
export SLUICE_COUCHBASE_BUCKET=$COUCHBASE_BUCKET
EOF
}

couchbase_start() {
  if is_running couchbase && couchbase_health >/dev/null 2>&1; then
    _couchbase_write_env
    return 0
  fi
  if is_running couchbase; then # recorded by an earlier start but not answering: replace it
    log "couchbase: pid $(cat "$(pid_file couchbase)") not healthy, stopping it"
    kill -- "-$(cat "$(pid_file couchbase)")" 2>/dev/null || true
    sleep 1
  fi
  [[ -x "$COUCHBASE_BIN" ]] || die "couchbase: $COUCHBASE_BIN missing (run couchbase_install)"
  tls_ready || die "couchbase: no TLS material in $TLS_DIR (dev/up makes it)"
  rm -f "$COUCHBASE_STATE" "$RUN_DIR/couchbase.env"

  # The log is appended to across starts: read only what this start writes.
  local logf="$LOG_DIR/couchbase.log" offset=0 out connstr mgmt i
  [[ -f "$logf" ]] && offset="$(stat -c %s "$logf")"
  GOCAVES_TLS_CERT="$TLS_SERVER_CERT" GOCAVES_TLS_KEY="$TLS_SERVER_KEY" \
    start_bg couchbase "$COUCHBASE_BIN" --mock-only

  for ((i = 0; i < 60; i++)); do
    out="$(tail -c "+$((offset + 1))" "$logf" 2>/dev/null || true)"
    connstr="$(sed -n 's/^{"connstr":"\([^"]*\)"}$/\1/p;T;q' <<<"$out")"
    [[ -n "$connstr" ]] && break
    if ! is_running couchbase; then
      tail -n 40 "$logf" >&2 || true
      die "couchbase exited during start-up (log: $logf)"
    fi
    sleep 0.5
  done
  [[ -n "$connstr" ]] || die "couchbase: no connection string in $logf after 30s"
  # The first mgmt listener is node 1's plain-HTTP one (the second is its TLS one).
  mgmt="$(sed -n 's/.*starting listener for mgmt (http) server on port \([0-9]*\)$/\1/p;T;q' <<<"$out")"
  [[ -n "$mgmt" ]] || die "couchbase: no mgmt port in $logf"
  # The TLS ports as the cluster config advertises them (nodesExt): kvSSL of every node, node 1's
  # mgmtSSL. Printed as "TLS_CONNSTR MGMT_SSL_PORT".
  local tls
  tls="$(curl -fsS --max-time 5 -u "$COUCHBASE_USER:$COUCHBASE_PASS" "http://127.0.0.1:$mgmt/pools/default/nodeServices" |
    python3 -c 'import json,sys
nodes = json.load(sys.stdin)["nodesExt"]
kv = ["%s:%d" % (n.get("hostname") or "127.0.0.1", n["services"]["kvSSL"]) for n in nodes]
print("couchbases://" + ",".join(kv), nodes[0]["services"]["mgmtSSL"])')" \
    || die "couchbase: no kvSSL/mgmtSSL ports in the cluster config (http://127.0.0.1:$mgmt/pools/default/nodeServices)"
  printf 'CONNSTR=%s\nMGMT_PORT=%s\nTLS_CONNSTR=%s\nMGMT_SSL_PORT=%s\n' "$connstr" "$mgmt" "${tls% *}" "${tls##* }" >"$COUCHBASE_STATE"

  wait_for couchbase 30
  _couchbase_write_env
}

couchbase_health() {
  local CONNSTR MGMT_PORT TLS_CONNSTR MGMT_SSL_PORT
  _couchbase_state || return 1
  python3 "$ROOT/dev/couchbase/health.py" "$CONNSTR" "$MGMT_PORT" \
    "$COUCHBASE_USER" "$COUCHBASE_PASS" "$COUCHBASE_BUCKET" "$TLS_CONNSTR" "$MGMT_SSL_PORT" "$TLS_CA"
}

couchbase_version() {
  [[ -f "$COUCHBASE_DIR/VERSION" ]] || { echo "not installed"; return 1; }
  cat "$COUCHBASE_DIR/VERSION"
}

couchbase_endpoint() {
  local CONNSTR MGMT_PORT TLS_CONNSTR MGMT_SSL_PORT
  if _couchbase_state; then
    echo "$CONNSTR (bucket $COUCHBASE_BUCKET, $COUCHBASE_USER/$COUCHBASE_PASS; mgmt http://127.0.0.1:$MGMT_PORT; TLS $TLS_CONNSTR, mgmt https://127.0.0.1:$MGMT_SSL_PORT)"
  else
    echo "not started"
  fi
}
