# Functions shared by deploy/local/kafka.sh (one broker) and
# deploy/local/cluster.sh (three brokers). Sourced, not run.
#
# The caller defines log and die, and sets:
#   SCRIPT_DIR, KAFKA_HOST, KAFKA_VERSION, KAFKA_HOME_CACHE, KAFKA_STOP_TIMEOUT
# and, for the broker the process functions act on (cluster.sh switches them
# per node):
#   PROPS (its server.properties), PID_FILE, LOG_DIR, SERVER_LOG, OUT_FILE
# shellcheck shell=bash

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

# A new KRaft cluster id, in the format of `kafka-storage.sh random-uuid`:
# 16 random bytes, base64url, no padding, not starting with '-'.
new_cluster_id() {
  python3 -c 'import base64,uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
    if not s.startswith("-"): print(s); break' 2>/dev/null \
    || "$(java_bin)" -cp "$(classpath)" kafka.tools.StorageTool random-uuid 9>&-
}

# ---------------------------------------------------------------- process
# PID of the broker started with $PROPS, or nothing.
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

# Start the JVM of the broker of $PROPS in the background (detached from our
# lock and terminal) and write its pid to $PID_FILE.
launch_broker() {
  # shellcheck disable=SC2086  # option strings are meant to be word-split
  nohup "$(java_bin)" $KAFKA_HEAP_OPTS $KAFKA_JVM_OPTS $KAFKA_OPTS \
    -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2.xml" \
    -Dkafka.logs.dir="$LOG_DIR" \
    -cp "$(classpath)" kafka.Kafka "$PROPS" \
    </dev/null >"$OUT_FILE" 2>&1 9>&- &
  echo $! >"$PID_FILE"
}

port_open() {  # port_open PORT -> 0 if something accepts TCP on 127.0.0.1:PORT
  (exec 3<>"/dev/tcp/$KAFKA_HOST/$1") 2>/dev/null
}

# Real Kafka protocol check: ApiVersions v0 must come back with error_code 0.
api_ready() {  # api_ready [PORT] (default $KAFKA_PORT)
  local port=${1:-$KAFKA_PORT}
  command -v python3 >/dev/null 2>&1 || { port_open "$port"; return; }
  python3 - "$KAFKA_HOST" "$port" <<'PY' 2>/dev/null
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

# A process that exists and is not a zombie (a broker we started and killed in
# this same script stays a zombie until we exit).
alive() {  # alive PID
  kill -0 "$1" 2>/dev/null || return 1
  local stat; stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != Z ]
}

now_ms() { date +%s%3N; }
elapsed() { local d=$(( $(now_ms) - $1 )); printf '%d.%d' $((d / 1000)) $(((d % 1000) / 100)); }

stop_pid() {  # SIGTERM (controlled shutdown), SIGKILL after KAFKA_STOP_TIMEOUT
  local pid=$1 deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  kill -TERM "$pid" 2>/dev/null || true
  while alive "$pid"; do
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
