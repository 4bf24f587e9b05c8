# shellcheck shell=bash
# clickhouse: the modern ClickHouse engine of the rig. chdb-core 26.9 (PyPI: ClickHouse's own
# engine as an in-process library, no server binary to download) behind dev/clickhouse/server.py,
# a small front that speaks ClickHouse's HTTP interface the way the Rust `clickhouse` crate uses
# it (RowBinary[WithNamesAndTypes], LZ4 native blocks and LZ4 frames, settings as URL parameters,
# ClickHouse-style errors). Python venv and data live under $DEV_DIR/clickhouse.
#
# Port: SLUICE_DEV_CLICKHOUSE_PORT (default 18123). When the default is taken by something else a
# free port is picked; an explicitly set port is used as is. The port in use is recorded in
# $DEV_DIR/clickhouse/port, which health/endpoint read.
# Hand-poking: curl "$SLUICE_CLICKHOUSE_URL" --data-binary 'SELECT version()'

CH_HOME="$DEV_DIR/clickhouse"
CH_VENV="$CH_HOME/venv"
CH_DATA="$CH_HOME/data"
CH_SRC="$ROOT/dev/clickhouse"
CH_CHDB_SPEC="chdb-core==26.9.*"

_ch_port() {
  local p; p="$(cat "$CH_HOME/port" 2>/dev/null || true)"
  echo "${p:-$(port_of SLUICE_DEV_CLICKHOUSE_PORT 18123)}"
}
_ch_url() { echo "http://127.0.0.1:$(_ch_port)"; }

# _ch_query SQL : run SQL over HTTP and print the body; non-zero (body on stderr) on an error.
_ch_query() {
  curl -sS --fail-with-body --max-time 10 --data-binary "$1" "$(_ch_url)/"
}

clickhouse_install() {
  command -v curl >/dev/null || apt_install curl
  # The marker holds a hash of everything that decides the venv's contents: editing
  # requirements.txt or the chdb spec (a version bump) rebuilds it.
  local want
  want="$( { cat "$CH_SRC/requirements.txt"; echo "$CH_CHDB_SPEC"; python3 --version; } | sha256sum | cut -d' ' -f1)"
  [[ "$(cat "$CH_VENV/.sluice-installed" 2>/dev/null)" == "$want" ]] && return 0

  log "clickhouse: creating the Python venv with $CH_CHDB_SPEC in $CH_VENV"
  rm -rf "$CH_VENV"
  mkdir -p "$CH_HOME"
  if ! python3 -m venv "$CH_VENV" >>"$LOG_DIR/clickhouse.log" 2>&1; then
    # Debian's python3 ships venv's ensurepip separately.
    rm -rf "$CH_VENV"; apt_install python3-venv
    /usr/bin/python3 -m venv "$CH_VENV" >>"$LOG_DIR/clickhouse.log" 2>&1 \
      || { tail -n 20 "$LOG_DIR/clickhouse.log" >&2; die "clickhouse: cannot create a venv"; }
  fi
  local pip=("$CH_VENV/bin/pip" install -q --disable-pip-version-check --no-input)
  # chdb-core declares pandas and pyarrow (~150 MB) for its DataFrame/Arrow APIs; the HTTP front
  # only moves bytes, so they are left out.
  { "${pip[@]}" --no-deps "$CH_CHDB_SPEC" && "${pip[@]}" -r "$CH_SRC/requirements.txt"; } \
    >>"$LOG_DIR/clickhouse.log" 2>&1 \
    || { tail -n 30 "$LOG_DIR/clickhouse.log" >&2; die "clickhouse: pip install failed"; }
  "$CH_VENV/bin/python" -c 'import chdb, lz4.frame, clickhouse_cityhash.cityhash, zstandard, pytest' \
    || die "clickhouse: the venv does not import its packages"
  echo "$want" > "$CH_VENV/.sluice-installed"
}

clickhouse_start() {
  # Already ours and alive: never launch a second one (chdb holds the data dir); just wait for it.
  if is_running clickhouse; then
    log "clickhouse already running"
  else
    local port="${SLUICE_DEV_CLICKHOUSE_PORT:-}"
    if [[ -z "$port" ]]; then
      port=18123
      if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then port="$(free_port)"; fi
    fi
    ram_data_dir clickhouse >/dev/null
    echo "$port" > "$CH_HOME/port"
    PYTHONUNBUFFERED=1 start_bg clickhouse "$CH_VENV/bin/python" "$CH_SRC/server.py" \
      --host 127.0.0.1 --port "$port" --data "$CH_DATA" --merge-nice "${SLUICE_DEV_MERGE_NICE:-19}"
  fi
  wait_for clickhouse 60
  echo "export SLUICE_CLICKHOUSE_URL=$(_ch_url)" > "$RUN_DIR/clickhouse.env"
}

clickhouse_health() {
  [[ "$(curl -sS --max-time 5 "$(_ch_url)/ping" 2>/dev/null)" == "Ok." ]] || return 1
  [[ "$(_ch_query 'SELECT 1' 2>/dev/null)" == "1" ]]
}

clickhouse_version() {
  local v
  if v="$(_ch_query 'SELECT version()' 2>/dev/null)"; then
    echo "ClickHouse $v (chdb-core $("$CH_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("chdb-core"))' 2>/dev/null))"
  elif [[ -x "$CH_VENV/bin/python" ]]; then
    # Not running: ask the installed engine itself (importing chdb runs SELECT version()).
    "$CH_VENV/bin/python" -c 'import chdb; print(f"ClickHouse {chdb.engine_version} (chdb-core {chdb.__version__})")'
  else
    echo "not installed"
  fi
}

clickhouse_endpoint() { _ch_url; }
