# shellcheck shell=bash
# Apache Kafka 4.x, KRaft mode: one JVM that is both broker and controller, listening on 127.0.0.1
# only. Jars come from Maven Central (dev/kafka/pom.xml), so no tarball mirror is needed.
#   SLUICE_DEV_KAFKA_PORT (19092)             clients (PLAINTEXT)
#   SLUICE_DEV_KAFKA_CONTROLLER_PORT (19093)  KRaft controller
# Hand-poking: `kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server ... --list`.

KAFKA_HOME="$DEV_DIR/kafka"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_DATA="$KAFKA_HOME/data"
KAFKA_CONF="$KAFKA_HOME/server.properties"

kafka_port() { port_of SLUICE_DEV_KAFKA_PORT 19092; }
kafka_controller_port() { port_of SLUICE_DEV_KAFKA_CONTROLLER_PORT 19093; }

# kafka_tool CLASS ARGS... : run a Kafka main class (CLI tools log at WARN only).
kafka_tool() {
  java -Xmx256m -Dsluice.log.level=WARN -Dlog4j2.configurationFile="$ROOT/dev/kafka/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" "$@"
}

kafka_install() {
  command -v java >/dev/null || apt_install openjdk-17-jre-headless  # Kafka 4 needs Java 17+
  command -v mvn >/dev/null || apt_install maven
  # The marker holds the pom's hash: editing the pom (e.g. a version bump) re-fetches.
  local want; want="$(sha256sum "$ROOT/dev/kafka/pom.xml" | cut -d' ' -f1)"
  [[ "$(cat "$KAFKA_LIBS/.pom.sha256" 2>/dev/null)" == "$want" ]] && return 0
  log "kafka: fetching jars from Maven Central"
  rm -rf "$KAFKA_LIBS"
  # Maven's output (with -q only errors, plus stray colour codes) goes to the log; shown on failure.
  mvn -q -B -f "$ROOT/dev/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$KAFKA_LIBS" >>"$LOG_DIR/kafka.log" 2>&1 \
    || { tail -n 30 "$LOG_DIR/kafka.log" >&2; die "kafka: mvn dependency:copy-dependencies failed"; }
  echo "$want" > "$KAFKA_LIBS/.pom.sha256"
}

kafka_start() {
  local port cport; port="$(kafka_port)"; cport="$(kafka_controller_port)"
  # Else the health check below could be answered by whatever already holds the port.
  local p; for p in "$port" "$cport"; do
    ! (: <>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || die "kafka: 127.0.0.1:$p is already in use"
  done
  mkdir -p "$KAFKA_DATA"
  # Rewritten on every start so port changes apply. A static voter set (controller.quorum.voters)
  # rather than `format --standalone`: the dynamic quorum stores the controller's endpoint in the
  # metadata log, which can go stale if the controller port changed between runs.
  cat > "$KAFKA_CONF" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$cport
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$KAFKA_DATA
num.partitions=3
auto.create.topics.enable=false
# A single node: every internal topic must get by with one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Consumer groups start at once instead of waiting 3s for more members.
group.initial.rebalance.delay.ms=0
EOF
  # Format only a fresh log dir: an already formatted one makes the tool fail.
  if [[ ! -f "$KAFKA_DATA/meta.properties" ]]; then
    local id; id="$(python3 -c 'import base64,uuid;print(base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("="))')"
    log "kafka: formatting $KAFKA_DATA (cluster id $id)"
    kafka_tool kafka.tools.StorageTool format --cluster-id "$id" --config "$KAFKA_CONF" \
      >>"$LOG_DIR/kafka.log" 2>&1 || { tail -n 20 "$LOG_DIR/kafka.log" >&2; die "kafka: storage format failed"; }
  fi
  start_bg kafka java -Xms256m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="$ROOT/dev/kafka/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONF"
  # A broker with many partitions (a dev box after many test runs) recovers its logs for minutes.
  wait_for kafka 300
  echo "export SLUICE_KAFKA_BROKERS=127.0.0.1:$port" > "$RUN_DIR/kafka.env"
}

# ApiVersions + Metadata over a socket (python, no JVM): answers only once the broker is unfenced.
kafka_health() { python3 "$ROOT/dev/kafka/health.py" "127.0.0.1:$(kafka_port)"; }

# The version of the installed kafka_2.13 jar, e.g. 4.4.0.
kafka_version() {
  local jars=("$KAFKA_LIBS"/kafka_2.13-*.jar)
  [[ -f "${jars[0]}" ]] || { echo "not installed"; return 1; }
  local v="${jars[0]##*/kafka_2.13-}"; echo "${v%.jar}"
}

kafka_endpoint() { echo "127.0.0.1:$(kafka_port) (controller 127.0.0.1:$(kafka_controller_port))"; }
