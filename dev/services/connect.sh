# shellcheck shell=bash
# Kafka Connect 4.3 with Debezium's PostgreSQL connector (and its outbox event router) and
# Apicurio's Avro converter, all jars from Maven Central (dev/connect/pom.xml): the change data
# capture of the legacy database into Kafka. REST API on 127.0.0.1 only.
#   SLUICE_DEV_CONNECT_PORT (18083)   REST API: PUT /connectors/<name>/config, DELETE ..., etc.
# Example connector configs: dev/connect/*.json (dev/connect/apply creates one by hand).
#
# Distributed mode with a single worker, not standalone: connectors are created, restarted and
# deleted over REST and survive a worker restart (their configs, offsets and statuses live in Kafka
# topics), which is what tests of "restart and re-snapshot" need; standalone keeps REST-created
# connectors in memory only. Costs: a group join at start-up (seconds) and three internal topics.
#
# Kafka: $SLUICE_KAFKA_BROKERS, else $RUN_DIR/kafka.env (dev/up writes it when it starts kafka).
# The registry is not needed by the worker; connector configs name it per converter.

CONNECT_HOME="$DEV_DIR/connect"
CONNECT_LIBS="$CONNECT_HOME/libs"         # the worker's classpath
CONNECT_PLUGINS="$CONNECT_HOME/plugins"   # plugin.path: one class loader per subdirectory
CONNECT_CONF="$CONNECT_HOME/worker.properties"
# The worker's group, also naming its internal topics: one per $DEV_DIR, so the workers of two
# checkouts sharing a Kafka (worktrees) do not join one Connect cluster.
CONNECT_GROUP="sluice-dev-connect-$(printf %s "$DEV_DIR" | sha256sum | cut -c1-8)"

connect_port() { port_of SLUICE_DEV_CONNECT_PORT 18083; }

# The classes the health check wants listed, i.e. what the example configs use.
CONNECT_REQUIRED_PLUGINS=(
  io.debezium.connector.postgresql.PostgresConnector
  io.debezium.transforms.outbox.EventRouter
  io.apicurio.registry.utils.converter.AvroConverter
  org.apache.kafka.connect.json.JsonConverter
)

# connect_fetch PROFILE DIR : copy the jars of one profile of dev/connect/pom.xml into DIR.
connect_fetch() {
  mvn -q -B -f "$ROOT/dev/connect/pom.xml" -P "$1" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$2" >>"$LOG_DIR/connect.log" 2>&1 \
    || { tail -n 30 "$LOG_DIR/connect.log" >&2; die "connect: mvn dependency:copy-dependencies -P $1 failed"; }
}

connect_install() {
  command -v java >/dev/null || apt_install openjdk-17-jre-headless  # Kafka 4 and Debezium 3: Java 17+
  command -v mvn >/dev/null || apt_install maven
  # The marker holds the pom's hash: editing the pom (e.g. a version bump) re-fetches.
  local want; want="$(sha256sum "$ROOT/dev/connect/pom.xml" | cut -d' ' -f1)"
  [[ "$(cat "$CONNECT_HOME/.pom.sha256" 2>/dev/null)" == "$want" ]] && return 0
  log "connect: fetching Kafka Connect, Debezium and Apicurio jars from Maven Central"
  rm -rf "$CONNECT_LIBS" "$CONNECT_PLUGINS" "$CONNECT_HOME/.pom.sha256"
  connect_fetch worker "$CONNECT_LIBS"
  connect_fetch debezium "$CONNECT_PLUGINS/debezium-postgres"
  connect_fetch apicurio "$CONNECT_PLUGINS/apicurio-converter"
  echo "$want" > "$CONNECT_HOME/.pom.sha256"
}

# The Kafka bootstrap servers: the environment's, else those of the kafka that dev/up started.
connect_brokers() {
  if [[ -n ${SLUICE_KAFKA_BROKERS:-} ]]; then echo "$SLUICE_KAFKA_BROKERS"; return 0; fi
  [[ -f "$RUN_DIR/kafka.env" ]] || return 1
  # shellcheck source=/dev/null
  (source "$RUN_DIR/kafka.env" && echo "${SLUICE_KAFKA_BROKERS:?}")
}

# The registry's native v2 API, which the Apicurio converter speaks (from $SLUICE_SCHEMA_REGISTRY_URL
# or $RUN_DIR/registry.env, both the Confluent API /apis/ccompat/v7 of the same server); empty when
# unknown.
connect_registry_url() {
  local url="${SLUICE_SCHEMA_REGISTRY_URL:-}"
  # shellcheck source=/dev/null
  [[ -z $url && -f "$RUN_DIR/registry.env" ]] && url="$(source "$RUN_DIR/registry.env" && echo "${SLUICE_SCHEMA_REGISTRY_URL:-}")"
  [[ $url == */apis/ccompat/v7 ]] && echo "${url%/apis/ccompat/v7}/apis/registry/v2"
  return 0
}

connect_start() {
  local port brokers registry; port="$(connect_port)"
  brokers="$(connect_brokers)" || die "connect: no Kafka: start it first (dev/up kafka connect) or set SLUICE_KAFKA_BROKERS"
  ! (: <>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || die "connect: 127.0.0.1:$port is already in use"
  # Rewritten on every start so port and broker changes apply.
  cat > "$CONNECT_CONF" <<EOF
bootstrap.servers=$brokers
group.id=$CONNECT_GROUP
config.storage.topic=_${CONNECT_GROUP}-configs
offset.storage.topic=_${CONNECT_GROUP}-offsets
status.storage.topic=_${CONNECT_GROUP}-status
# A single broker.
config.storage.replication.factor=1
offset.storage.replication.factor=1
status.storage.replication.factor=1
offset.storage.partitions=5
status.storage.partitions=1
# The broker does not auto-create topics: source connectors create theirs through Connect
# (topic.creation.default.* in each connector config).
topic.creation.enable=true
# Connector configs choose their converters; these are the defaults.
key.converter=org.apache.kafka.connect.json.JsonConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
listeners=http://127.0.0.1:$port
rest.advertised.host.name=127.0.0.1
rest.advertised.port=$port
plugin.path=$CONNECT_PLUGINS
# Apicurio's 2.x converter jar has no ServiceLoader manifest, so plugins are found by scanning.
plugin.discovery=only_scan
# Source offsets (the LSN Debezium confirmed) reach Kafka within a second of a record being sent.
offset.flush.interval.ms=1000
# One worker: nobody else could take over a departed worker's tasks, so do not wait for it.
scheduled.rebalance.max.delay.ms=0
EOF
  start_bg connect java -Xms128m -Xmx512m -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/dev/kafka/log4j2.properties" \
    -cp "$CONNECT_LIBS/*" org.apache.kafka.connect.cli.ConnectDistributed "$CONNECT_CONF"
  wait_for connect 180
  registry="$(connect_registry_url)"
  {
    echo "export SLUICE_CONNECT_URL=http://127.0.0.1:$port"
    # What a connector config's apicurio.registry.url should say (the converter's API of the registry).
    if [[ -n $registry ]]; then echo "export SLUICE_CONNECT_REGISTRY_URL=$registry"; fi
  } > "$RUN_DIR/connect.env"
}

# The worker has joined its group and read its configs (GET /health, Kafka 3.9+), and every plugin
# the example configs use is loaded.
connect_health() {
  local base plugins p; base="http://127.0.0.1:$(connect_port)"
  curl -fsS -o /dev/null --max-time 5 "$base/health" || return 1
  plugins="$(curl -fsS --max-time 5 "$base/connector-plugins?connectorsOnly=false")" || return 1
  for p in "${CONNECT_REQUIRED_PLUGINS[@]}"; do [[ $plugins == *"\"$p\""* ]] || return 1; done
}

# Kafka Connect and Debezium versions, from the installed jars, e.g. 4.4.0 + debezium 3.6.1.Final.
connect_version() {
  local rt=("$CONNECT_LIBS"/connect-runtime-*.jar) dbz=("$CONNECT_PLUGINS"/debezium-postgres/debezium-connector-postgres-*.jar)
  [[ -f "${rt[0]}" && -f "${dbz[0]}" ]] || { echo "not installed"; return 1; }
  local v="${rt[0]##*/connect-runtime-}" d="${dbz[0]##*/debezium-connector-postgres-}"
  echo "${v%.jar} + debezium ${d%.jar}"
}

connect_endpoint() { echo "http://127.0.0.1:$(connect_port)"; }
