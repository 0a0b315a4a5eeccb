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
# See deploy/local/README.md.
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

java_bin() {
  if [ -n "${JAVA_HOME:-}" ] && [ -x "$JAVA_HOME/bin/java" ]; then
    echo "$JAVA_HOME/bin/java"
  elif command -v java >/dev/null 2>&1; then
    command -v java
  else
    die "java not found (Kafka 4.x needs Java 17+)"
  fi
}

# Take an exclusive lock on fd 9 for the rest of the script. Every child that
# must outlive us is started with 9>&- so it does not keep the lock.
lock() {  # lock FILE
  command -v flock >/dev/null 2>&1 || return 0
  exec 9>"$1"
  flock -w 300 9 || die "timed out waiting for lock $1"
}

# ---------------------------------------------------------------- jars
libs_ready() { [ -f "$KAFKA_HOME_CACHE/.complete" ]; }

fetch() {
  libs_ready && return 0
  local parent; parent=$(dirname "$KAFKA_HOME_CACHE")
  mkdir -p "$parent"
  ( # own subshell so the cache lock is released before we go on
    lock "$parent/.fetch.lock"
    libs_ready && exit 0
    command -v mvn >/dev/null 2>&1 || die "mvn not found: needed once to fetch the Kafka jars"
    log "fetching Kafka $KAFKA_VERSION jars from Maven Central (first run only)..."
    local t0=$SECONDS tmp mvn_log
    tmp=$(mktemp -d "$parent/.libs.XXXXXX")
    mvn_log=$tmp.mvn.log
    if ! mvn -q -B -f "$SCRIPT_DIR/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
          dependency:copy-dependencies -DincludeScope=runtime \
          -DoutputDirectory="$tmp" >"$mvn_log" 2>&1 9>&-; then
      tail -n 30 "$mvn_log" >&2 || true
      rm -rf "$tmp" "$mvn_log"
      die "could not resolve org.apache.kafka:kafka_2.13:$KAFKA_VERSION (see above)"
    fi
    rm -f "$mvn_log"
    [ -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ] || { rm -rf "$tmp"; die "kafka_2.13-$KAFKA_VERSION.jar missing after resolve"; }
    touch "$tmp/.complete"
    rm -rf "$KAFKA_HOME_CACHE"
    mv "$tmp" "$KAFKA_HOME_CACHE"
    log "cached $(find "$KAFKA_HOME_CACHE" -name '*.jar' | wc -l) jars in $KAFKA_HOME_CACHE ($((SECONDS - t0)) s)"
  )
}

classpath() { echo "$KAFKA_HOME_CACHE/*"; }

# ---------------------------------------------------------------- process
# PID of the broker serving this data dir, or nothing.
broker_pid() {
  local pid cmd
  if [ -f "$PID_FILE" ]; then
    pid=$(cat "$PID_FILE" 2>/dev/null || true)
    if [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ]; then
      cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" || true)
      case "$cmd" in *kafka.Kafka*"$PROPS"*) echo "$pid"; return 0 ;; esac
    fi
  fi
  # pid file lost or stale: look for a broker running with our server.properties
  for f in /proc/[0-9]*/cmdline; do
    cmd=$(tr '\0' ' ' 2>/dev/null <"$f" || true)
    case "$cmd" in
      *kafka.Kafka*"$PROPS"*)
        pid=${f#/proc/}; pid=${pid%/cmdline}
        echo "$pid" 2>/dev/null >"$PID_FILE" || true
        echo "$pid"; return 0 ;;
    esac
  done
  return 0
}

port_open() {  # port_open PORT -> 0 if something accepts TCP on 127.0.0.1:PORT
  (exec 3<>"/dev/tcp/$KAFKA_HOST/$1") 2>/dev/null
}

# Real Kafka protocol check: ApiVersions v0 must come back with error_code 0.
api_ready() {
  command -v python3 >/dev/null 2>&1 || { port_open "$KAFKA_PORT"; return; }
  python3 - "$KAFKA_HOST" "$KAFKA_PORT" <<'PY' 2>/dev/null
import socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
cid, client = 7, b"kafka.sh"
# header v1: api_key=18 (ApiVersions), api_version=0, correlation_id, client_id
req = struct.pack(">hhih", 18, 0, cid, len(client)) + client
try:
    s = socket.create_connection((host, port), timeout=2)
    s.settimeout(3)
    s.sendall(struct.pack(">i", len(req)) + req)
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit(1)
        buf += chunk
    s.close()
    corr, err, n = struct.unpack(">ihi", buf[4:14])
    sys.exit(0 if corr == cid and err == 0 and n > 0 else 1)
except Exception:
    sys.exit(1)
PY
}

log_size() { if [ -f "$SERVER_LOG" ]; then wc -c <"$SERVER_LOG"; else echo 0; fi; }

started_since() {  # started_since OFFSET -> 0 if "Kafka Server started" was logged after OFFSET
  [ -f "$SERVER_LOG" ] || return 1
  local off=$1
  [ "$(log_size)" -ge "$off" ] || off=0   # log rolled over meanwhile
  # (process substitution, not a pipe: grep -q + pipefail would see tail's SIGPIPE)
  grep -q 'Kafka Server started' < <(tail -c +"$((off + 1))" "$SERVER_LOG")
}

show_log_tail() {  # show_log_tail OFFSET -> JVM output + server.log written since OFFSET
  local off=${1:-0}
  [ "$(log_size)" -ge "$off" ] || off=0
  if [ -s "$OUT_FILE" ]; then log "--- tail of $OUT_FILE"; tail -n 20 "$OUT_FILE" >&2 || true; fi
  local new; new=$(tail -c +"$((off + 1))" "$SERVER_LOG" 2>/dev/null | tail -n 40 || true)
  if [ -n "$new" ]; then log "--- tail of $SERVER_LOG"; printf '%s\n' "$new" >&2; fi
}

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
    # same format as `kafka-storage.sh random-uuid`: 16 random bytes, base64url, no padding
    cluster_id=$(python3 -c 'import base64,uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    if not s.startswith("-"): print(s); break' 2>/dev/null) \
      || cluster_id=$("$(java_bin)" -cp "$(classpath)" kafka.tools.StorageTool random-uuid 9>&-)
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
    if ! kill -0 "$pid" 2>/dev/null; then
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

now_ms() { date +%s%3N; }
elapsed() { local d=$(( $(now_ms) - $1 )); printf '%d.%d' $((d / 1000)) $(((d % 1000) / 100)); }

stop_pid() {  # SIGTERM (controlled shutdown), SIGKILL after KAFKA_STOP_TIMEOUT
  local pid=$1 deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  kill -TERM "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "still running after ${KAFKA_STOP_TIMEOUT}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.1
  done
  rm -f "$PID_FILE"
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
  # shellcheck disable=SC2086  # option strings are meant to be word-split
  nohup "$(java_bin)" $KAFKA_HEAP_OPTS $KAFKA_JVM_OPTS $KAFKA_OPTS \
    -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2.xml" \
    -Dkafka.logs.dir="$LOG_DIR" \
    -cp "$(classpath)" kafka.Kafka "$PROPS" \
    </dev/null >"$OUT_FILE" 2>&1 9>&- &
  pid=$!
  echo "$pid" >"$PID_FILE"
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
