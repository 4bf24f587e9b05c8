# shellcheck shell=bash
# PostgreSQL from Debian's packages: the "legacy monolith" database that Debezium captures.
# Its own cluster under $DEV_DIR/postgres (Debian's default cluster is left alone), listening on
# 127.0.0.1 only, wal_level=logical for pgoutput. Every start (re)applies dev/postgres/legacy.sql
# to the database `legacy`, owned by the user sluice (password sluice, REPLICATION).
#   SLUICE_DEV_POSTGRES_PORT (15432)
# Hand-poking: `. .dev/env && psql "$SLUICE_POSTGRES_URL"`.
#
# As root the server runs as the `postgres` OS user (it refuses to run as root), otherwise as the
# current user.

PG_HOME="$DEV_DIR/postgres"
PG_USER=sluice
PG_PASSWORD=sluice
PG_DATABASE=legacy

postgres_port() { port_of SLUICE_DEV_POSTGRES_PORT 15432; }

# Runs a command as the postgres OS user (setpriv execs: a pid recorded for it is the command's).
PG_SETPRIV=(setpriv --reuid=postgres --regid=postgres --init-groups)

# Where the server's files are: data/ (the cluster) and run/ (its Unix socket, used only for the
# superuser's bootstrap SQL). $PG_HOME, unless the postgres OS user cannot reach $DEV_DIR (a clone
# under a private home directory): then a directory under /var/lib/postgresql, which
# $PG_HOME/data links to, so `dev/down --purge` still drops the cluster.
pg_dir() {
  if [[ $(id -u) -eq 0 ]] && id postgres >/dev/null 2>&1 &&
    ! "${PG_SETPRIV[@]}" test -x "$DEV_DIR"; then
    echo "/var/lib/postgresql/sluice-dev-$(printf %s "$DEV_DIR" | sha256sum | cut -c1-12)"
  else
    echo "$PG_HOME"
  fi
}

# The server binaries: those of the major version the data dir was made with, else the newest.
postgres_bin() {
  local v dirs=(/usr/lib/postgresql/*/bin)
  v="$(cat "$(pg_dir)/data/PG_VERSION" 2>/dev/null || true)"
  if [[ -n $v && -x /usr/lib/postgresql/$v/bin/postgres ]]; then echo "/usr/lib/postgresql/$v/bin"; return 0; fi
  [[ -d ${dirs[0]} ]] || return 1
  printf '%s\n' "${dirs[@]}" | sort -V | tail -n 1
}

# pg_as CMD... : run CMD as the server's OS user.
pg_as() {
  if [[ $(id -u) -eq 0 ]]; then
    "${PG_SETPRIV[@]}" env HOME="$(pg_dir)" "$@"
  else
    "$@"
  fi
}

# psql as the superuser over the Unix socket (trust, the socket dir is private to the server user).
pg_superuser_psql() {
  pg_as "$(postgres_bin)/psql" -h "$(pg_dir)/run" -p "$(postgres_port)" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"
}

postgres_install() {
  postgres_bin >/dev/null 2>&1 || apt_install postgresql
  postgres_bin >/dev/null || die "postgres: no /usr/lib/postgresql/*/bin after installing postgresql"
  local dir; dir="$(pg_dir)"
  mkdir -p "$PG_HOME" "$dir/run"
  if [[ $dir != "$PG_HOME" ]]; then
    [[ -L "$PG_HOME/data" ]] || rm -rf "$dir/data"   # the link is gone: purged, start afresh
    ln -sfn "$dir/data" "$PG_HOME/data"
  fi
  if [[ $(id -u) -eq 0 ]]; then
    chown postgres: "$dir" "$dir/run"
    pg_as test -w "$dir" || die "postgres: the postgres OS user cannot write $dir"
  fi
  [[ -f "$dir/data/PG_VERSION" ]] && return 0
  log "postgres: initdb $dir/data"
  rm -rf "$dir/data"
  pg_as "$(postgres_bin)/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C.UTF-8 >>"$LOG_DIR/postgres.log" 2>&1 ||
    { tail -n 20 "$LOG_DIR/postgres.log" >&2; die "postgres: initdb failed"; }
}

postgres_start() {
  local port; port="$(postgres_port)"
  ! (: <>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || die "postgres: 127.0.0.1:$port is already in use"
  local dir as=(); dir="$(pg_dir)"
  [[ $(id -u) -eq 0 ]] && as=("${PG_SETPRIV[@]}")
  # A postmaster killed hard leaves its pid file; the server then refuses to start although the pid
  # in it is gone (dev/up only gets here when the recorded process is not running).
  rm -f "$dir/data/postmaster.pid"
  # Settings on the command line, so a port change applies on the next start. Slots: one per
  # connector, and tests make their own; max_slot_wal_keep_size caps the WAL a forgotten slot pins.
  # fsync=off: the rig's data is disposable (only an OS crash could corrupt it), and with fsync the
  # shutdown checkpoint after a test run (hundreds of files of created and dropped tables) took
  # 11 s, past dev/down's grace period.
  start_bg postgres "${as[@]}" "$(postgres_bin)/postgres" -D "$dir/data" \
    -c listen_addresses=127.0.0.1 -c port="$port" -c unix_socket_directories="$dir/run" \
    -c unix_socket_permissions=0700 \
    -c wal_level=logical -c max_replication_slots=32 -c max_wal_senders=32 \
    -c max_slot_wal_keep_size=1GB -c shared_buffers=64MB -c max_connections=100 -c fsync=off \
    -c timezone=UTC -c log_timezone=UTC -c log_line_prefix='%m [%p] %u@%d '
  wait_for postgres 60
  # Role, database and schema: idempotent, so every start brings an older data dir up to date.
  pg_superuser_psql -d postgres >>"$LOG_DIR/postgres.log" 2>&1 <<SQL || { tail -n 20 "$LOG_DIR/postgres.log" >&2; die "postgres: bootstrap SQL failed"; }
SELECT format('CREATE ROLE %I LOGIN REPLICATION', '$PG_USER')
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER') \gexec
ALTER ROLE $PG_USER WITH LOGIN REPLICATION PASSWORD '$PG_PASSWORD';
SELECT format('CREATE DATABASE %I OWNER %I', '$PG_DATABASE', '$PG_USER')
  WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE') \gexec
SQL
  PGPASSWORD="$PG_PASSWORD" "$(postgres_bin)/psql" -h 127.0.0.1 -p "$port" -U "$PG_USER" -d "$PG_DATABASE" \
    -v ON_ERROR_STOP=1 -qAt -f "$ROOT/dev/postgres/legacy.sql" >>"$LOG_DIR/postgres.log" 2>&1 ||
    { tail -n 20 "$LOG_DIR/postgres.log" >&2; die "postgres: applying dev/postgres/legacy.sql failed"; }
  echo "export SLUICE_POSTGRES_URL=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$port/$PG_DATABASE" > "$RUN_DIR/postgres.env"
}

# A real query through the server's TCP listener would need the role that bootstrap creates; the
# socket answers as soon as the server accepts connections.
postgres_health() { [[ "$(pg_superuser_psql -d postgres -c 'SELECT 1' 2>/dev/null)" == 1 ]]; }

# e.g. 15.18
postgres_version() {
  local bin; bin="$(postgres_bin)" || { echo "not installed"; return 1; }
  "$bin/postgres" --version | awk '{print $3}'
}

postgres_endpoint() { echo "postgres://$PG_USER:***@127.0.0.1:$(postgres_port)/$PG_DATABASE"; }
