#!/usr/bin/env bash
# Start/stop a real single-node Apache Kafka 4.x broker (KRaft, combined
# broker+controller) on 127.0.0.1 without Docker: the jars come from Maven
# Central through deploy/local/pom.xml and are cached outside the repo.
#
#   deploy/local/kafka.sh up|down|status|fetch|logs
#
# Env: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (KAFKA_PORT+1),
#      KAFKA_DATA_DIR (<repo>/.kafka/<port>), KAFKA_VERSION (4.3.1),
#      KAFKA_HOME_CACHE (jar dir), KAFKA_START_TIMEOUT (90),
#      KAFKA_STOP_TIMEOUT (30), KAFKA_HEAP_OPTS, KAFKA_JVM_OPTS, KAFKA_OPTS,
#      KAFKA_SASL_SSL_PORT (unset: off) adds a SASL_SSL listener (SCRAM-SHA-512
#      over TLS) beside the plaintext one: a CA and a broker certificate are
#      made with openssl at the first start (KAFKA_DATA_DIR/tls/ca.pem is the
#      CA clients trust) and the user KAFKA_SASL_USER (scorer) is created at
#      format time with KAFKA_SASL_PASSWORD (random unless given; written to
#      KAFKA_DATA_DIR/tls/sasl-password, mode 600).
# Functions shared with cluster.sh (three nodes) are in lib.sh. See deploy/local/README.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

KAFKA_VERSION=${KAFKA_VERSION:-4.3.1}
KAFKA_HOST=127.0.0.1
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}
KAFKA_DATA_DIR=${KAFKA_DATA_DIR:-$REPO_ROOT/.kafka/$KAFKA_PORT}
# The cache is keyed by the pom's content too: a dependency added there is fetched.
POM_KEY=$(cksum < "$SCRIPT_DIR/pom.xml" | cut -d' ' -f1)
KAFKA_HOME_CACHE=${KAFKA_HOME_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/icp-scorer/kafka-$KAFKA_VERSION-$POM_KEY/libs}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms256m -Xmx512m}
KAFKA_JVM_OPTS=${KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError -XX:-UsePerfData -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true}
KAFKA_OPTS=${KAFKA_OPTS:-}

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

case "$KAFKA_PORT$KAFKA_CONTROLLER_PORT" in *[!0-9]*) die "KAFKA_PORT/KAFKA_CONTROLLER_PORT must be numbers" ;; esac
[ "$KAFKA_PORT" != "$KAFKA_CONTROLLER_PORT" ] || die "KAFKA_CONTROLLER_PORT must differ from KAFKA_PORT"

# Absolute paths from here on (the script may be called from any cwd).
case "$KAFKA_DATA_DIR" in /*) ;; *) KAFKA_DATA_DIR=$PWD/$KAFKA_DATA_DIR ;; esac
PROPS=$KAFKA_DATA_DIR/server.properties
PID_FILE=$KAFKA_DATA_DIR/kafka.pid
LOG_DIR=$KAFKA_DATA_DIR/logs
SERVER_LOG=$LOG_DIR/server.log
OUT_FILE=$KAFKA_DATA_DIR/kafka.out          # JVM stdout/stderr (normally empty)
LOG_DIRS=$KAFKA_DATA_DIR/data               # Kafka log.dirs (+ KRaft metadata log)
LOCK_FILE=$KAFKA_DATA_DIR/.lock
KAFKA_SASL_SSL_PORT=${KAFKA_SASL_SSL_PORT:-}
KAFKA_SASL_USER=${KAFKA_SASL_USER:-scorer}
TLS_DIR=$KAFKA_DATA_DIR/tls

# java_bin lock fetch classpath new_cluster_id broker_pid launch_broker port_open
# api_ready log_size started_since show_log_tail alive now_ms elapsed stop_pid
# shellcheck source=deploy/local/lib.sh
. "$SCRIPT_DIR/lib.sh"

# ---------------------------------------------------------------- SASL_SSL
sasl_listener() { [ -n "$KAFKA_SASL_SSL_PORT" ] && printf ',SASL_SSL://%s:%s' "$KAFKA_HOST" "$KAFKA_SASL_SSL_PORT"; true; }

sasl_props() {
  [ -n "$KAFKA_SASL_SSL_PORT" ] || return 0
  cat <<EOP
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS_DIR/broker.p12
ssl.keystore.password=$(cat "$TLS_DIR/keystore-password")
ssl.client.auth=none
EOP
}

make_tls() {  # a CA, a broker key and certificate for 127.0.0.1/localhost, a PKCS12 keystore
  [ -n "$KAFKA_SASL_SSL_PORT" ] || return 0
  [ -f "$TLS_DIR/broker.p12" ] && return 0
  command -v openssl >/dev/null 2>&1 || die "openssl not found: needed for KAFKA_SASL_SSL_PORT"
  mkdir -p "$TLS_DIR" && chmod 700 "$TLS_DIR"
  local q=(-loglevel error)
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=icp-scorer local CA" \
    -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.pem" 2>/dev/null || die "could not make the CA"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$TLS_DIR/broker.key" -out "$TLS_DIR/broker.csr" 2>/dev/null || die "could not make the broker key"
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$TLS_DIR/san.ext"
  openssl x509 -req -in "$TLS_DIR/broker.csr" -CA "$TLS_DIR/ca.pem" -CAkey "$TLS_DIR/ca.key" \
    -CAcreateserial -days 30 -extfile "$TLS_DIR/san.ext" -out "$TLS_DIR/broker.pem" 2>/dev/null \
    || die "could not sign the broker certificate"
  python3 -c 'import secrets; print(secrets.token_hex(16))' >"$TLS_DIR/keystore-password"
  openssl pkcs12 -export -in "$TLS_DIR/broker.pem" -inkey "$TLS_DIR/broker.key" \
    -certfile "$TLS_DIR/ca.pem" -name broker -out "$TLS_DIR/broker.p12" \
    -passout "file:$TLS_DIR/keystore-password" || die "could not write the keystore"
  if [ -n "${KAFKA_SASL_PASSWORD:-}" ]; then
    printf '%s\n' "$KAFKA_SASL_PASSWORD" >"$TLS_DIR/sasl-password"
  else
    python3 -c 'import secrets; print(secrets.token_urlsafe(18))' >"$TLS_DIR/sasl-password"
  fi
  chmod 600 "$TLS_DIR"/*
  printf '%s\n' "$KAFKA_SASL_USER" >"$TLS_DIR/sasl-user"
  log "SASL_SSL: CA $TLS_DIR/ca.pem, user $KAFKA_SASL_USER, password in $TLS_DIR/sasl-password"
}

write_props() {
  cat >"$PROPS.tmp" <<EOF
# Written by deploy/local/kafka.sh on every 'up'; edits are overwritten.
# Single-node combined broker+controller in KRaft mode, for local dev/tests.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT$(sasl_listener)
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT$(sasl_listener)
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_SSL:SASL_SSL
log.dirs=$LOG_DIRS
$(sasl_props)

num.partitions=1
auto.create.topics.enable=true
delete.topic.enable=true
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0

num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=168
log.retention.check.interval.ms=300000
EOF
  mv "$PROPS.tmp" "$PROPS"
}

format_storage() {
  [ -f "$LOG_DIRS/meta.properties" ] && return 0
  local cluster_id
  if [ -f "$KAFKA_DATA_DIR/cluster.id" ]; then
    cluster_id=$(cat "$KAFKA_DATA_DIR/cluster.id")
  else
    cluster_id=$(new_cluster_id)
    echo "$cluster_id" >"$KAFKA_DATA_DIR/cluster.id"
  fi
  local scram=()
  if [ -n "$KAFKA_SASL_SSL_PORT" ]; then
    scram=(--add-scram "SCRAM-SHA-512=[name=$(cat "$TLS_DIR/sasl-user"),password=$(cat "$TLS_DIR/sasl-password")]")
  fi
  log "formatting KRaft storage in $LOG_DIRS (cluster id $cluster_id)..."
  mkdir -p "$LOG_DIRS"
  if ! "$(java_bin)" $KAFKA_HEAP_OPTS -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2.xml" \
        -Dkafka.logs.dir="$LOG_DIR" -cp "$(classpath)" \
        kafka.tools.StorageTool format --cluster-id "$cluster_id" --config "$PROPS" \
        "${scram[@]}" \
        >"$KAFKA_DATA_DIR/format.out" 2>&1 9>&-; then
    cat "$KAFKA_DATA_DIR/format.out" >&2
    die "kafka-storage format failed"
  fi
}

wait_ready() {  # wait_ready PID LOG_OFFSET T0
  local pid=$1 off=$2 t0=$3 deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  while :; do
    if ! alive "$pid"; then
      show_log_tail "$off"
      rm -f "$PID_FILE"
      die "Kafka broker (pid $pid) exited during startup"
    fi
    if started_since "$off" && api_ready; then
      log "Kafka ready on $KAFKA_HOST:$KAFKA_PORT ($(elapsed "$t0") s)"
      return 0
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      show_log_tail "$off"
      log "Kafka did not become ready on $KAFKA_HOST:$KAFKA_PORT within ${KAFKA_START_TIMEOUT}s; stopping it"
      stop_pid "$pid"
      die "Kafka start timed out (KAFKA_START_TIMEOUT=$KAFKA_START_TIMEOUT, logs in $LOG_DIR)"
    fi
    sleep 0.2
  done
}

# Port the running broker of this data dir was started with (from its server.properties).
running_port() {
  sed -n "s#^advertised.listeners=PLAINTEXT://$KAFKA_HOST:\([0-9]*\)\$#\1#p" "$PROPS" 2>/dev/null || true
}

# ---------------------------------------------------------------- commands
cmd_up() {
  local t0; t0=$(now_ms)
  mkdir -p "$KAFKA_DATA_DIR"
  lock "$LOCK_FILE"
  local pid; pid=$(broker_pid)
  if [ -n "$pid" ]; then
    local rport; rport=$(running_port)
    if [ -n "$rport" ] && [ "$rport" != "$KAFKA_PORT" ]; then
      die "the broker of $KAFKA_DATA_DIR (pid $pid) runs on port $rport, not $KAFKA_PORT: 'kafka.sh down' it first or use another KAFKA_DATA_DIR"
    fi
    if api_ready; then
      log "Kafka already running on $KAFKA_HOST:$KAFKA_PORT (pid $pid)"
      return 0
    fi
    log "Kafka (pid $pid) is running but not answering yet; waiting..."
    wait_ready "$pid" 0 "$t0"
    return 0
  fi
  rm -f "$PID_FILE"
  port_open "$KAFKA_PORT" && die "port $KAFKA_HOST:$KAFKA_PORT is already in use by another process (set KAFKA_PORT)"
  port_open "$KAFKA_CONTROLLER_PORT" && die "controller port $KAFKA_HOST:$KAFKA_CONTROLLER_PORT is already in use (set KAFKA_CONTROLLER_PORT)"

  fetch
  mkdir -p "$LOG_DIR"
  make_tls
  write_props
  format_storage

  local off; off=$(log_size)
  launch_broker
  pid=$(cat "$PID_FILE")
  log "starting Kafka $KAFKA_VERSION (pid $pid) on $KAFKA_HOST:$KAFKA_PORT, data in $KAFKA_DATA_DIR"
  wait_ready "$pid" "$off" "$t0"
}

cmd_down() {
  [ -d "$KAFKA_DATA_DIR" ] && lock "$LOCK_FILE"
  local pid; pid=$(broker_pid)
  if [ -z "$pid" ]; then
    rm -f "$PID_FILE"
    log "Kafka not running (data dir $KAFKA_DATA_DIR)"
    return 0
  fi
  local t0; t0=$(now_ms)
  log "stopping Kafka (pid $pid)..."
  stop_pid "$pid"
  log "Kafka stopped ($(elapsed "$t0") s)"
}

cmd_status() {
  local pid; pid=$(broker_pid)
  if [ -z "$pid" ]; then
    echo "not running (data dir $KAFKA_DATA_DIR)"
    return 3
  fi
  local rport; rport=$(running_port)
  [ -z "$rport" ] || KAFKA_PORT=$rport
  if api_ready; then
    echo "running (pid $pid) on $KAFKA_HOST:$KAFKA_PORT, data dir $KAFKA_DATA_DIR"
  else
    echo "running (pid $pid) but not answering on $KAFKA_HOST:$KAFKA_PORT, data dir $KAFKA_DATA_DIR"
    return 1
  fi
}

usage() {
  cat >&2 <<EOF
usage: $(basename "$0") up|down|status|fetch|logs
  up      start the broker (idempotent) and wait until it serves clients
  down    stop the broker of KAFKA_DATA_DIR (idempotent)
  status  print running / not running (exit 0 running, 3 not running, 1 not answering)
  fetch   only resolve and cache the Kafka jars
  logs    tail -f the broker log
  tool CLASS [ARGS...]  run one of Kafka's Java tools from the cached jars, e.g.
          tool org.apache.kafka.tools.ConsumerPerformance --bootstrap-server ...
EOF
}

case "${1:-}" in
  up) cmd_up ;;
  down|stop) cmd_down ;;
  status) cmd_status ;;
  fetch) fetch ;;
  logs) exec tail -n 100 -f "$SERVER_LOG" ;;
  tool) shift; fetch; mkdir -p "$LOG_DIR"; exec "$(java_bin)" -Xmx512m -cp "$(classpath)" \
          -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2.xml" -Dkafka.logs.dir="$LOG_DIR" "$@" ;;
  -h|--help|help) usage ;;
  *) usage; exit 2 ;;
esac
