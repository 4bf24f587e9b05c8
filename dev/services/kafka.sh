# shellcheck shell=bash
# Apache Kafka 4.x, KRaft mode: one JVM that is both broker and controller, listening on 127.0.0.1
# only. Jars come from Maven Central (dev/kafka/pom.xml), so no tarball mirror is needed.
#   SLUICE_DEV_KAFKA_PORT (19092)             clients (PLAINTEXT)
#   SLUICE_DEV_KAFKA_CONTROLLER_PORT (19093)  KRaft controller
#   SLUICE_DEV_KAFKA_SASL_SSL_PORT (19094)    clients, SASL_SSL: SCRAM-SHA-256, SCRAM-SHA-512 and
#                                             PLAIN, user `sluice` with the rig's random password
#                                             (dev/tls/tls.sh: secret kafka-sasl)
#   SLUICE_DEV_KAFKA_MTLS_PORT (19095)        clients, SSL with a client certificate required (mTLS)
# Both secured listeners present the rig's server certificate (PEM keystore, SAN IP:127.0.0.1) and
# trust the rig CA; no authorizer (any authenticated client may do anything); the broker and the
# controller talk PLAINTEXT among themselves. The SCRAM credentials live in the metadata log: set
# with ConfigCommand after the start whenever $KAFKA_DATA/.sluice-scram does not hold the hash of
# the current password (a fresh log dir, a new password).
# Hand-poking: `kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server ... --list`.

KAFKA_HOME="$DEV_DIR/kafka"
KAFKA_LIBS="$KAFKA_HOME/libs"
KAFKA_DATA="$KAFKA_HOME/data"
KAFKA_CONF="$KAFKA_HOME/server.properties"

kafka_port() { port_of SLUICE_DEV_KAFKA_PORT 19092; }
kafka_controller_port() { port_of SLUICE_DEV_KAFKA_CONTROLLER_PORT 19093; }
kafka_sasl_ssl_port() { port_of SLUICE_DEV_KAFKA_SASL_SSL_PORT 19094; }
kafka_mtls_port() { port_of SLUICE_DEV_KAFKA_MTLS_PORT 19095; }
KAFKA_SASL_USER=sluice

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
  local port cport sport mport pw
  port="$(kafka_port)"; cport="$(kafka_controller_port)"; sport="$(kafka_sasl_ssl_port)"; mport="$(kafka_mtls_port)"
  pw="$(tls_secret kafka-sasl)"
  # Else the health check below could be answered by whatever already holds the port.
  local p; for p in "$port" "$cport" "$sport" "$mport"; do
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
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport,SASL_SSL://127.0.0.1:$sport,SSL://127.0.0.1:$mport
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$sport,SSL://127.0.0.1:$mport
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL
# The secured listeners (issue #15): the rig's certificate, the rig CA trusted (dev/tls/tls.sh).
ssl.keystore.type=PEM
ssl.keystore.location=$TLS_SERVER_KEYSTORE
ssl.truststore.type=PEM
ssl.truststore.location=$TLS_CA
listener.name.ssl.ssl.client.auth=required
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USER="$pw";
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
  _kafka_scram "$pw"
  cat > "$RUN_DIR/kafka.env" <<EOF
export SLUICE_KAFKA_BROKERS=127.0.0.1:$port
export SLUICE_DEV_KAFKA_SASL_SSL_BROKERS=127.0.0.1:$sport
export SLUICE_DEV_KAFKA_SASL_USERNAME=$KAFKA_SASL_USER
export SLUICE_DEV_KAFKA_SASL_PASSWORD=$pw
export SLUICE_DEV_KAFKA_MTLS_BROKERS=127.0.0.1:$mport
EOF
}

# _kafka_scram PASSWORD : the SCRAM-SHA-256/512 credentials of $KAFKA_SASL_USER, set through the
# PLAINTEXT listener (a JVM start, so only when the marker says the metadata log lacks them).
_kafka_scram() {
  local want marker="$KAFKA_DATA/.sluice-scram"
  want="$(printf '%s:%s' "$KAFKA_SASL_USER" "$1" | sha256sum | cut -d' ' -f1)"
  [[ "$(cat "$marker" 2>/dev/null)" == "$want" ]] && return 0
  log "kafka: setting the SCRAM credentials of user $KAFKA_SASL_USER"
  # One mechanism per call: both in one request fail ("A user credential cannot be altered twice
  # in the same request").
  local mech
  for mech in SCRAM-SHA-256 SCRAM-SHA-512; do
    kafka_tool org.apache.kafka.tools.ConfigCommand --bootstrap-server "127.0.0.1:$(kafka_port)" --alter \
      --entity-type users --entity-name "$KAFKA_SASL_USER" --add-config "$mech=[iterations=8192,password=$1]" \
      >>"$LOG_DIR/kafka.log" 2>&1 || { tail -n 20 "$LOG_DIR/kafka.log" >&2; die "kafka: setting the $mech credential failed"; }
  done
  echo "$want" >"$marker"
}

# ApiVersions + Metadata over a socket (python, no JVM): answers only once the broker is unfenced.
# Then a TLS handshake with each secured listener (rig CA, host 127.0.0.1; the client certificate
# for the mTLS one): a broker started by an older dev/up, without them, counts as unhealthy.
kafka_health() {
  python3 "$ROOT/dev/kafka/health.py" "127.0.0.1:$(kafka_port)" || return 1
  python3 - "$(kafka_sasl_ssl_port)" "$(kafka_mtls_port)" "$TLS_CA" "$TLS_CLIENT_CERT" "$TLS_CLIENT_KEY" <<'PY'
import socket, ssl, sys
sport, mport, ca, cert, key = sys.argv[1:]
for port, client_cert in ((int(sport), False), (int(mport), True)):
    ctx = ssl.create_default_context(cafile=ca)
    if client_cert:
        ctx.load_cert_chain(cert, key)
    with socket.create_connection(("127.0.0.1", port), timeout=3) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1"):
            pass
PY
}

# The version of the installed kafka_2.13 jar, e.g. 4.4.0.
kafka_version() {
  local jars=("$KAFKA_LIBS"/kafka_2.13-*.jar)
  [[ -f "${jars[0]}" ]] || { echo "not installed"; return 1; }
  local v="${jars[0]##*/kafka_2.13-}"; echo "${v%.jar}"
}

kafka_endpoint() {
  echo "127.0.0.1:$(kafka_port) (controller 127.0.0.1:$(kafka_controller_port); SASL_SSL 127.0.0.1:$(kafka_sasl_ssl_port), mTLS 127.0.0.1:$(kafka_mtls_port))"
}
