# shellcheck shell=bash
# The cluster rig (`dev/up --cluster`, issue #14): what fault tests need and one node of each
# cannot show -- a broker dying under a replicated topic, a ClickHouse replica missing inserts and
# catching up, `ON CLUSTER` DDL, Distributed tables -- all on 127.0.0.1:
#   kafka-1..3         Apache Kafka KRaft, each node broker+controller (combined mode), the same
#                      jars as the single-node broker (dev/services/kafka.sh installs them)
#   zookeeper          Debian's zookeeper package (3.8), standalone, run by us (not systemd): what
#                      ClickHouse 18.16 needs for replication and the distributed DDL queue
#   clickhouse-s1r1..s2r2
#                      ClickHouse 18.16 (the clickhouse_compat package), cluster `sluice`:
#                      2 shards x 2 replicas, internal_replication (a Distributed table writes one
#                      replica per shard, ReplicatedMergeTree copies to the other)
# The schema registry (Apicurio, SQL storage on an H2 file: nothing in Kafka) and Couchbase are not
# replicated: dev/up --cluster starts the single-node services if they are not running and copies
# their variables into $DEV_DIR/cluster.env.
#
# Not in SERVICES (a group of nodes, not one service): dev/up --cluster, dev/down [--cluster],
# dev/status and dev/cluster (kill/stop/start one node) source this file.
#
# Ports, each the base of a range (node n adds n-1; ClickHouse nodes in the order s1r1,s1r2,s2r1,s2r2):
#   SLUICE_DEV_CLUSTER_KAFKA_PORT (29092)                   clients: 29092..29094
#   SLUICE_DEV_CLUSTER_KAFKA_CONTROLLER_PORT (29192)        KRaft controllers: 29192..29194
#   SLUICE_DEV_CLUSTER_ZOOKEEPER_PORT (22181)
#   SLUICE_DEV_CLUSTER_CLICKHOUSE_PORT (28123)              HTTP: 28123..28126
#   SLUICE_DEV_CLUSTER_CLICKHOUSE_TCP_PORT (29001)          native: 29001..29004
#   SLUICE_DEV_CLUSTER_CLICKHOUSE_INTERSERVER_PORT (29011)  replica fetches: 29011..29014
# Fixed, never replaced by a free one: every node's config lists the others' ports.
#
# State: $DEV_DIR/cluster/<node>/ (rendered config + data; ClickHouse's and ZooKeeper's data in
# RAM like the single-node ClickHouse servers', see ram_data_dir), pid
# $RUN_DIR/cluster-<node>.pid, log $LOG_DIR/cluster-<node>.log. Every pid/health/stop goes through
# lib.sh (pid_alive, wait_for, stop_service), the same code as the single-node services.

# shellcheck source=dev/services/kafka.sh
source "$ROOT/dev/services/kafka.sh"
# shellcheck source=dev/services/clickhouse_compat.sh
source "$ROOT/dev/services/clickhouse_compat.sh"

CLUSTER_HOME="$DEV_DIR/cluster"
CLUSTER_ENV="$DEV_DIR/cluster.env"
CLUSTER_NAME=sluice
CLUSTER_KAFKA=(kafka-1 kafka-2 kafka-3)
CLUSTER_CLICKHOUSE=(clickhouse-s1r1 clickhouse-s1r2 clickhouse-s2r1 clickhouse-s2r2)
# Start order (ClickHouse needs ZooKeeper; Kafka needs nothing but a quorum of itself).
CLUSTER_NODES=(zookeeper "${CLUSTER_KAFKA[@]}" "${CLUSTER_CLICKHOUSE[@]}")
ZK_CLASSPATH="/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"

# The lib.sh service name of a node (pid, log and env file names).
_cl_svc() { echo "cluster-$1"; }

cluster_is_node() { [[ " ${CLUSTER_NODES[*]} " == *" ${1:-} "* ]]; }

# _cl_index NODE : 0-based position of a Kafka node in CLUSTER_KAFKA or a ClickHouse node in
# CLUSTER_CLICKHOUSE (the port offset).
_cl_index() {
  local i list=("${CLUSTER_KAFKA[@]}"); [[ $1 == clickhouse-* ]] && list=("${CLUSTER_CLICKHOUSE[@]}")
  for i in "${!list[@]}"; do [[ ${list[i]} == "$1" ]] && { echo "$i"; return 0; }; done
  die "cluster: unknown node '$1'"
}

cluster_kafka_port() { echo $(($(port_of SLUICE_DEV_CLUSTER_KAFKA_PORT 29092) + $(_cl_index "$1"))); }
cluster_kafka_controller_port() { echo $(($(port_of SLUICE_DEV_CLUSTER_KAFKA_CONTROLLER_PORT 29192) + $(_cl_index "$1"))); }
cluster_zookeeper_port() { port_of SLUICE_DEV_CLUSTER_ZOOKEEPER_PORT 22181; }
cluster_ch_http_port() { echo $(($(port_of SLUICE_DEV_CLUSTER_CLICKHOUSE_PORT 28123) + $(_cl_index "$1"))); }
cluster_ch_tcp_port() { echo $(($(port_of SLUICE_DEV_CLUSTER_CLICKHOUSE_TCP_PORT 29001) + $(_cl_index "$1"))); }
cluster_ch_interserver_port() { echo $(($(port_of SLUICE_DEV_CLUSTER_CLICKHOUSE_INTERSERVER_PORT 29011) + $(_cl_index "$1"))); }

# Every listening port of a node (checked free before it starts).
_cl_ports() {
  case "$1" in
    zookeeper) cluster_zookeeper_port ;;
    kafka-*) cluster_kafka_port "$1"; cluster_kafka_controller_port "$1" ;;
    clickhouse-*) cluster_ch_http_port "$1"; cluster_ch_tcp_port "$1"; cluster_ch_interserver_port "$1" ;;
  esac
}

# All three brokers, comma separated (SLUICE_KAFKA_BROKERS).
cluster_kafka_brokers() {
  local n out=()
  for n in "${CLUSTER_KAFKA[@]}"; do out+=("127.0.0.1:$(cluster_kafka_port "$n")"); done
  (IFS=,; echo "${out[*]}")
}

cluster_install() {
  kafka_install
  apt_install zookeeper
  [[ -f /usr/share/java/zookeeper.jar ]] || die "cluster: /usr/share/java/zookeeper.jar missing after install"
  # slf4j's simple binding (stderr, i.e. the log); without a binding ZooKeeper logs nothing.
  [[ -f /usr/share/java/slf4j-simple.jar ]] || apt_install libslf4j-java
  clickhouse_compat_install
}

# ---- ZooKeeper ---------------------------------------------------------------------------------

_cl_zookeeper_launch() {
  local home="$CLUSTER_HOME/zookeeper"
  # In RAM like the ClickHouse servers' data: it holds their replicas' metadata, so both have to
  # go together (after a reboot a replica's table is gone but ZooKeeper would still list it, and
  # re-creating the table would fail with "Replica ... already exists").
  ram_data_dir cluster/zookeeper >/dev/null
  # Rewritten on every start (port changes apply). No admin server (it wants 0.0.0.0:8080); srvr
  # for the health check; snapshots/logs purged hourly so a long-lived rig does not grow.
  cat > "$home/zoo.cfg" <<EOF
tickTime=2000
dataDir=$home/data
clientPort=$(cluster_zookeeper_port)
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=srvr,ruok,mntr
autopurge.snapRetainCount=3
autopurge.purgeInterval=1
EOF
  start_bg "$(_cl_svc zookeeper)" java -Xms32m -Xmx256m -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dorg.slf4j.simpleLogger.showDateTime=true \
    -cp "$ZK_CLASSPATH" org.apache.zookeeper.server.ZooKeeperServerMain "$home/zoo.cfg"
}

# `srvr` answers "Mode: standalone" only once the server serves requests.
_cl_zookeeper_health() {
  local out
  out="$(timeout 3 python3 - "$(cluster_zookeeper_port)" <<'EOF'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
s.sendall(b"srvr")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
print(data.decode(errors="replace"))
EOF
)" || return 1
  grep -q '^Mode: ' <<<"$out"
}

# ---- Kafka -------------------------------------------------------------------------------------

_cl_kafka_launch() {
  local node="$1" n port cport home conf voters="" k
  n=$(($(_cl_index "$node") + 1)); port="$(cluster_kafka_port "$node")"; cport="$(cluster_kafka_controller_port "$node")"
  home="$CLUSTER_HOME/$node"; conf="$home/server.properties"
  for k in "${CLUSTER_KAFKA[@]}"; do
    voters+="${voters:+,}$(($(_cl_index "$k") + 1))@127.0.0.1:$(cluster_kafka_controller_port "$k")"
  done
  mkdir -p "$home/data"
  # Rewritten on every start so port changes apply; a static voter set as in kafka.sh.
  cat > "$conf" <<EOF
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$home/data
num.partitions=3
auto.create.topics.enable=false
# Three nodes: topics (and the internal ones) survive one node down, writes with acks=all too.
default.replication.factor=3
min.insync.replicas=2
offsets.topic.replication.factor=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
# Consumer groups start at once instead of waiting 3s for more members.
group.initial.rebalance.delay.ms=0
EOF
  # One cluster id for the three, made once; only a fresh log dir is formatted.
  local idf="$CLUSTER_HOME/kafka.cluster-id"
  if [[ ! -s $idf ]]; then
    python3 -c 'import base64,uuid;print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))' > "$idf"
  fi
  if [[ ! -f "$home/data/meta.properties" ]]; then
    log "cluster: formatting $home/data (cluster id $(cat "$idf"))"
    local logf; logf="$LOG_DIR/$(_cl_svc "$node").log"
    kafka_tool kafka.tools.StorageTool format --cluster-id "$(cat "$idf")" --config "$conf" >>"$logf" 2>&1 \
      || { tail -n 20 "$logf" >&2; die "cluster: storage format of $node failed"; }
  fi
  start_bg "$(_cl_svc "$node")" java -Xms128m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/dev/kafka/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$conf"
}

# ---- ClickHouse --------------------------------------------------------------------------------

# Shard (1-based) and replica name of a ClickHouse node: clickhouse-s2r1 -> 2 s2r1.
_cl_ch_shard() { local s="${1#clickhouse-s}"; echo "${s%%r*}"; }
_cl_ch_replica() { echo "${1#clickhouse-}"; }

_cl_clickhouse_launch() {
  local node="$1" home="$CLUSTER_HOME/$1" http tcp inter shards="" s r
  http="$(cluster_ch_http_port "$node")"; tcp="$(cluster_ch_tcp_port "$node")"
  inter="$(cluster_ch_interserver_port "$node")"
  mkdir -p "$home/etc/config.d"
  ram_data_dir "cluster/$node" >/dev/null
  # The single-node 18.16 server's config (dev/clickhouse_compat/), plus the cluster's parts in
  # config.d/ (merged over it by the server, element by element). Re-rendered on every start.
  # No HTTPS on the cluster's servers: the single-node server's TLS port and certificate are left out.
  sed -e "s|@HTTP_PORT@|$http|" -e "s|@TCP_PORT@|$tcp|" -e "s|@DATA_DIR@|$home/data|g" \
    -e '/<https_port>/d' -e '/<openSSL>/,/<\/openSSL>/d' \
    "$CHC_TEMPLATES/config.xml" > "$home/etc/config.xml"
  # The cluster's servers have only the passwordless default user: the password user of the
  # single-node server (clickhouse_compat.sh, for the secured-connection tests) is left out.
  sed -e '/<sluice>/,/<\/sluice>/d' "$CHC_TEMPLATES/users.xml" > "$home/etc/users.xml"
  for s in 1 2; do
    shards+="            <shard>
                <internal_replication>true</internal_replication>
"
    for r in 1 2; do
      shards+="                <replica><host>127.0.0.1</host><port>$(cluster_ch_tcp_port "clickhouse-s${s}r$r")</port></replica>
"
    done
    shards+="            </shard>
"
  done
  cat > "$home/etc/config.d/cluster.xml" <<EOF
<?xml version="1.0"?>
<!-- Written by dev/services/cluster.sh for $node: replication, the cluster, ON CLUSTER DDL. -->
<yandex>
    <!-- Replicas fetch parts from each other here (loopback only, like the other ports). -->
    <interserver_http_host>127.0.0.1</interserver_http_host>
    <interserver_http_port>$inter</interserver_http_port>

    <!-- Four servers on one small box: smaller cache ceilings than the single-node server's. -->
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>

    <macros>
        <shard>$(_cl_ch_shard "$node")</shard>
        <replica>$(_cl_ch_replica "$node")</replica>
    </macros>

    <zookeeper>
        <node><host>127.0.0.1</host><port>$(cluster_zookeeper_port)</port></node>
        <session_timeout_ms>30000</session_timeout_ms>
    </zookeeper>

    <distributed_ddl>
        <path>/clickhouse/task_queue/ddl</path>
    </distributed_ddl>

    <remote_servers>
        <$CLUSTER_NAME>
$shards        </$CLUSTER_NAME>
    </remote_servers>
</yandex>
EOF
  start_bg "$(_cl_svc "$node")" "$CHC_BIN" --config-file="$home/etc/config.xml"
}

# /ping, a query, and the ZooKeeper session (replication and ON CLUSTER need it).
_cl_clickhouse_health() {
  local url; url="http://127.0.0.1:$(cluster_ch_http_port "$1")"
  [[ "$(curl -sS --max-time 2 "$url/ping" 2>/dev/null)" == "Ok." ]] || return 1
  [[ "$(curl -sS --fail --max-time 3 --data-binary "SELECT count() > 0 FROM system.zookeeper WHERE path = '/'" "$url/" 2>/dev/null)" == 1 ]]
}

# ---- nodes -------------------------------------------------------------------------------------

cluster_node_health() {
  case "$1" in
    zookeeper) _cl_zookeeper_health ;;
    kafka-*) python3 "$ROOT/dev/kafka/health.py" "127.0.0.1:$(cluster_kafka_port "$1")" ;;
    clickhouse-*) _cl_clickhouse_health "$1" ;;
  esac
}

cluster_node_endpoint() {
  case "$1" in
    zookeeper) echo "127.0.0.1:$(cluster_zookeeper_port)" ;;
    kafka-*) echo "127.0.0.1:$(cluster_kafka_port "$1") (controller 127.0.0.1:$(cluster_kafka_controller_port "$1"))" ;;
    clickhouse-*) echo "http://127.0.0.1:$(cluster_ch_http_port "$1") (tcp $(cluster_ch_tcp_port "$1"), interserver $(cluster_ch_interserver_port "$1"))" ;;
  esac
}

cluster_node_version() {
  case "$1" in
    zookeeper) dpkg-query -W -f='${Version}\n' zookeeper 2>/dev/null || { echo "not installed"; return 1; } ;;
    kafka-*) kafka_version ;;
    clickhouse-*) dpkg-query -W -f='${Version}\n' clickhouse-server 2>/dev/null || { echo "not installed"; return 1; } ;;
  esac
}

# Seconds to wait for a node's health / for it to stop after SIGTERM.
_cl_start_secs() { case "$1" in kafka-*) echo 180 ;; *) echo 60 ;; esac; }
_cl_stop_grace() { case "$1" in kafka-*) echo 60 ;; clickhouse-*) echo 30 ;; *) echo 10 ;; esac; }

# cluster_node_launch NODE : start NODE in the background unless it runs; no waiting (three Kafka
# nodes are healthy only together, so they are all launched before anyone waits).
cluster_node_launch() {
  local node="$1" svc p; svc="$(_cl_svc "$1")"
  cluster_is_node "$node" || die "cluster: unknown node '$node' (known: ${CLUSTER_NODES[*]})"
  if is_running "$svc"; then return 0; fi
  [[ -f "$(pid_file "$svc")" ]] && log "cluster: $node was not running ($(stopped_why "$svc"))"
  rm -f "$(pid_file "$svc")"
  # Else the health check could be answered by whatever already holds the port.
  for p in $(_cl_ports "$node"); do
    ! (: <>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || die "cluster: $node: 127.0.0.1:$p is already in use"
  done
  case "$node" in
    zookeeper) _cl_zookeeper_launch ;;
    kafka-*) _cl_kafka_launch "$node" ;;
    clickhouse-*) _cl_clickhouse_launch "$node" ;;
  esac
}

# cluster_node_wait NODE : wait for its health; fails with the reason and the log's tail.
cluster_node_wait() {
  wait_for "$(_cl_svc "$1")" "$(_cl_start_secs "$1")" cluster_node_health "$1"
}

# cluster_node_start NODE... : launch all, then wait for each.
cluster_node_start() {
  local n t0=$SECONDS
  for n in "$@"; do cluster_node_launch "$n"; done
  for n in "$@"; do cluster_node_wait "$n"; log "cluster: $n healthy after $((SECONDS - t0))s: $(cluster_node_endpoint "$n")"; done
}

# cluster_node_stop NODE... : SIGTERM all at once (Kafka brokers shut down while the controller
# quorum is still there), wait, SIGKILL leftovers.
cluster_node_stop() {
  local n args=()
  for n in "$@"; do
    cluster_is_node "$n" || die "cluster: unknown node '$n' (known: ${CLUSTER_NODES[*]})"
    args+=("$(_cl_svc "$n")" "$(_cl_stop_grace "$n")")
  done
  stop_service "${args[@]}"
}

# cluster_node_kill NODE... : SIGKILL to the node's process group, no waiting, no clean shutdown
# (a crash). The pid file stays: the node counts as stopped (pid_alive) and starts again.
cluster_node_kill() {
  local n pid svc
  for n in "$@"; do
    cluster_is_node "$n" || die "cluster: unknown node '$n' (known: ${CLUSTER_NODES[*]})"
    svc="$(_cl_svc "$n")"
    if ! is_running "$svc"; then log "cluster: $n is not running"; continue; fi
    pid="$(cat "$(pid_file "$svc")")"
    kill -KILL -- -"$pid" 2>/dev/null || kill -KILL "$pid"
    # The kernel tears the process down asynchronously (a big JVM takes a moment): return once it
    # is dead (a zombie counts), so a `start` right after does not find it still "running".
    for _ in $(seq 1 100); do pid_alive "$pid" || break; sleep 0.1; done
    pid_alive "$pid" && die "cluster: $n (pid $pid) still alive 10s after SIGKILL"
    log "cluster: $n killed (SIGKILL, pid $pid)"
  done
}

cluster_node_running() { is_running "$(_cl_svc "$1")"; }

# 0 when any node runs / when the cluster was ever started here.
cluster_any_running() { local n; for n in "${CLUSTER_NODES[@]}"; do cluster_node_running "$n" && return 0; done; return 1; }
cluster_installed() { [[ -d $CLUSTER_HOME ]]; }

# ---- the whole cluster -------------------------------------------------------------------------

cluster_up() {
  local t0=$SECONDS t1
  cluster_install
  t1=$SECONDS
  cluster_node_start zookeeper
  cluster_node_start "${CLUSTER_KAFKA[@]}" "${CLUSTER_CLICKHOUSE[@]}"
  cluster_write_env
  log "cluster up in $((SECONDS - t1))s (install $((t1 - t0))s); endpoints written to $CLUSTER_ENV"
}

cluster_down() {
  cluster_node_stop "${CLUSTER_CLICKHOUSE[@]}"
  cluster_node_stop "${CLUSTER_KAFKA[@]}"
  cluster_node_stop zookeeper
  rm -f "$CLUSTER_ENV"
}

# Data of every node (installed software stays), RAM directories included.
cluster_purge() {
  local n ram
  for n in zookeeper "${CLUSTER_CLICKHOUSE[@]}"; do
    if [[ -L "$CLUSTER_HOME/$n/data" ]]; then
      ram="$(readlink -f "$CLUSTER_HOME/$n/data")"; rm -rf "$ram"
      rmdir --ignore-fail-on-non-empty "$(dirname "$ram")" 2>/dev/null || true
    fi
  done
  rm -rf "${CLUSTER_HOME:?}"
  rm -f "$LOG_DIR"/cluster-*.log "$LOG_DIR"/cluster-*.log.1
}

# $DEV_DIR/cluster.env: the cluster's endpoints plus the (single-node) registry's and Couchbase's,
# so a test can run against it with SLUICE_ENV_FILE=.dev/cluster.env.
cluster_write_env() {
  local n urls=() nodes=() shared="" svc
  for n in "${CLUSTER_CLICKHOUSE[@]}"; do urls+=("http://127.0.0.1:$(cluster_ch_http_port "$n")"); done
  for n in "${CLUSTER_KAFKA[@]}"; do nodes+=("$(($(_cl_index "$n") + 1)):$(cluster_kafka_port "$n")"); done
  for svc in registry couchbase; do
    if [[ -f "$RUN_DIR/$svc.env" ]] && is_running "$svc"; then shared+="$(cat "$RUN_DIR/$svc.env")"$'\n'
    else log "cluster: $svc is not running; cluster.env has no $svc variables"; fi
  done
  {
    printf '# Written by dev/up --cluster %s. Source it, or SLUICE_ENV_FILE=%s\n' "$(date -u +%FT%TZ)" "$CLUSTER_ENV"
    echo "export SLUICE_KAFKA_BROKERS=$(cluster_kafka_brokers)"
    echo "export SLUICE_CLICKHOUSE_URL=${urls[0]}"
    echo "export SLUICE_CLICKHOUSE_CLUSTER=$CLUSTER_NAME"
    echo "export SLUICE_DEV_CLUSTER_CLICKHOUSE_URLS=$(IFS=,; echo "${urls[*]}")"
    echo "export SLUICE_DEV_CLUSTER_KAFKA_NODES=$(IFS=,; echo "${nodes[*]}")"
    echo "export SLUICE_DEV_CLUSTER_ZOOKEEPER=127.0.0.1:$(cluster_zookeeper_port)"
    printf '%s' "$shared"
  } > "$CLUSTER_ENV"
}

# cluster_status_rows FMT : one dev/status row per node; 1 when the cluster runs and a node is
# not healthy.
cluster_status_rows() {
  local fmt="$1" n svc pid health endpoint version bad=0
  for n in "${CLUSTER_NODES[@]}"; do
    svc="$(_cl_svc "$n")"; pid=-; health=stopped; endpoint=-
    if is_running "$svc"; then
      pid="$(cat "$(pid_file "$svc")")"
      if cluster_node_health "$n" >/dev/null 2>&1; then health=healthy; else health=UNHEALTHY; fi
      endpoint="$(cluster_node_endpoint "$n")"
    fi
    [[ $health == healthy ]] || bad=1
    version="$(cluster_node_version "$n" 2>/dev/null)" || true
    # shellcheck disable=SC2059  # the format is the caller's
    printf "$fmt" "cluster/$n" "${version:--}" "$pid" "$health" "$endpoint"
  done
  cluster_any_running && return $bad
  return 0
}

# The Kafka node (kafka-N) leading partition PARTITION (default 0) of TOPIC.
cluster_kafka_leader() {
  local id
  id="$(kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$(cluster_kafka_brokers)" \
    --describe --topic "$1" | sed -n "s/.*Partition: ${2:-0}[[:space:]].*Leader: \([0-9-]*\).*/\1/p")"
  [[ $id =~ ^[1-9]$ ]] || die "cluster: no leader for $1 partition ${2:-0} (got '${id}')"
  echo "kafka-$id"
}
