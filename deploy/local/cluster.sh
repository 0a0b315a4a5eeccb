#!/usr/bin/env bash
# Start/stop a real three-node Apache Kafka 4.x cluster (KRaft; each node a
# combined broker+controller, one quorum of 3 voters) on 127.0.0.1, from the
# same Maven jars as kafka.sh, for failover and security tests.
#
#   deploy/local/cluster.sh up|down|status|kill N|stop N|start N|quorum|bootstrap [sasl]|logs N|tool CLASS ...
#
# Env: KAFKA_CLUSTER_PORT (19092): node N (1..3) listens on
#        base+10(N-1)+0  PLAINTEXT, clients
#        base+10(N-1)+1  CONTROLLER (KRaft quorum)
#        base+10(N-1)+2  SASL_SSL, clients (secure mode)
#        base+10(N-1)+3  INTERNAL, inter-broker (secure mode)
#      KAFKA_CLUSTER_DIR (<repo>/.kafka/cluster-<base port>): node1/ node2/
#        node3/ (server.properties, kafka.pid, logs/, data/), cluster.id, ca.pem, tls/
#      KAFKA_CLUSTER_SECURE (0; the mode the dir was formatted with, once it is):
#        1 turns on the StandardAuthorizer (allow.everyone.if.no.acl.found=false),
#        a SASL_SSL listener (SCRAM-SHA-512 over TLS) on each node and the SCRAM
#        users admin, worker, router, publisher, outsider (passwords in tls/password-USER, client
#        configs in tls/USER.properties); controller and inter-broker traffic go
#        over mutual TLS as the super user kafka-broker.
#      KAFKA_CLUSTER_HEAP_OPTS (-Xms128m -Xmx384m, per node),
#      KAFKA_CLUSTER_JVM_OPTS (kafka.sh's defaults + -XX:TieredStopAtLevel=1),
#      KAFKA_CLUSTER_PROPS (extra server.properties lines for every node),
#      and as kafka.sh: KAFKA_VERSION, KAFKA_HOME_CACHE, KAFKA_START_TIMEOUT (90),
#      KAFKA_STOP_TIMEOUT (30), KAFKA_OPTS (extra JVM flags).
# See deploy/local/README.md.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/../.." && pwd)

KAFKA_VERSION=${KAFKA_VERSION:-4.3.1}
KAFKA_HOST=127.0.0.1
NODES=(1 2 3)
PORT_STRIDE=10
CLIENT=0 CONTROLLER=1 SASL=2 INTERNAL=3     # port offsets inside a node's block
KAFKA_CLUSTER_PORT=${KAFKA_CLUSTER_PORT:-19092}
KAFKA_CLUSTER_DIR=${KAFKA_CLUSTER_DIR:-$REPO_ROOT/.kafka/cluster-$KAFKA_CLUSTER_PORT}
POM_KEY=$(cksum < "$SCRIPT_DIR/pom.xml" | cut -d' ' -f1)
KAFKA_HOME_CACHE=${KAFKA_HOME_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/icp-scorer/kafka-$KAFKA_VERSION-$POM_KEY/libs}
KAFKA_START_TIMEOUT=${KAFKA_START_TIMEOUT:-90}
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-30}
KAFKA_HEAP_OPTS=${KAFKA_CLUSTER_HEAP_OPTS:--Xms128m -Xmx384m}
# kafka.sh's JVM flags plus C1 only (TieredStopAtLevel=1): three JVMs starting on
# two cores are ready ~2 s sooner without C2 compiling; throughput is not the point here.
KAFKA_JVM_OPTS=${KAFKA_CLUSTER_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError -XX:-UsePerfData -Djava.awt.headless=true -Djava.net.preferIPv4Stack=true}
KAFKA_OPTS=${KAFKA_OPTS:-}
KAFKA_CLUSTER_PROPS=${KAFKA_CLUSTER_PROPS:-}
# Short-lived JVMs (storage format, admin tools): quick to start, small.
TOOL_JVM_OPTS="-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData -Djava.net.preferIPv4Stack=true"

log() { printf 'cluster.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

case "$KAFKA_CLUSTER_PORT" in ''|*[!0-9]*) die "KAFKA_CLUSTER_PORT must be a number" ;; esac
[ "$KAFKA_CLUSTER_PORT" -ge 1024 ] && [ $((KAFKA_CLUSTER_PORT + PORT_STRIDE * ${#NODES[@]})) -le 65535 ] \
  || die "KAFKA_CLUSTER_PORT must be in 1024..$((65535 - PORT_STRIDE * ${#NODES[@]}))"

case "$KAFKA_CLUSTER_DIR" in /*) ;; *) KAFKA_CLUSTER_DIR=$PWD/$KAFKA_CLUSTER_DIR ;; esac
DIR=$KAFKA_CLUSTER_DIR
LOCK_FILE=$DIR/.lock
MODE_FILE=$DIR/mode                 # "secure" or "plain": fixed when the nodes are formatted
TLS_DIR=$DIR/tls
CA_FILE=$DIR/ca.pem
# SCRAM users of secure mode: admin is a super user; worker, router and publisher
# (the publishing commands) get the ACLs `scorer acls` prints; outsider gets none.
USERS=(admin worker router publisher outsider)
BROKER_PRINCIPAL=kafka-broker       # CN of the nodes' certificate = inter-broker/controller principal
PROBE=$SCRIPT_DIR/kafka_probe.py
TOOL_LOG_DIR=$DIR/logs              # log of the admin tools this script runs

# Secure mode: the env var, else the mode the dir was formatted with.
SAVED_MODE=$(cat "$MODE_FILE" 2>/dev/null || true)
case "${KAFKA_CLUSTER_SECURE:-}" in
  1|true|yes) SECURE=1 ;;
  0|false|no) SECURE=0 ;;
  '') if [ "$SAVED_MODE" = secure ]; then SECURE=1; else SECURE=0; fi ;;
  *) die "KAFKA_CLUSTER_SECURE must be 0 or 1" ;;
esac

# java_bin lock fetch classpath new_cluster_id broker_pid launch_broker port_open
# api_ready log_size started_since show_log_tail alive now_ms elapsed stop_pid
# shellcheck source=deploy/local/lib.sh
. "$SCRIPT_DIR/lib.sh"

# ---------------------------------------------------------------- nodes
port() {  # port NODE OFFSET
  echo $((KAFKA_CLUSTER_PORT + PORT_STRIDE * ($1 - 1) + $2))
}

# Point the per-broker variables of lib.sh at node N.
use_node() {  # use_node N
  NODE=$1
  NODE_DIR=$DIR/node$NODE
  PROPS=$NODE_DIR/server.properties
  PID_FILE=$NODE_DIR/kafka.pid
  LOG_DIR=$NODE_DIR/logs
  SERVER_LOG=$LOG_DIR/server.log
  OUT_FILE=$NODE_DIR/kafka.out      # JVM stdout/stderr (normally empty)
  LOG_DIRS=$NODE_DIR/data           # Kafka log.dirs (+ KRaft metadata log)
  KAFKA_PORT=$(port "$NODE" $CLIENT)
}

check_node() {  # check_node ARG -> dies unless ARG is a node number
  case "${1:-}" in
    1|2|3) ;;
    *) die "expected a node number 1..${#NODES[@]}, got '${1:-}'" ;;
  esac
}

node_ports() {  # the ports node N listens on in the current mode
  local n=$1
  if [ "$SECURE" = 1 ]; then
    echo "$(port "$n" $CLIENT) $(port "$n" $CONTROLLER) $(port "$n" $SASL) $(port "$n" $INTERNAL)"
  else
    echo "$(port "$n" $CLIENT) $(port "$n" $CONTROLLER)"
  fi
}

bootstrap() {  # bootstrap [OFFSET] -> host:port,host:port,host:port
  local n out=()
  for n in "${NODES[@]}"; do out+=("$KAFKA_HOST:$(port "$n" "${1:-$CLIENT}")"); done
  (IFS=,; echo "${out[*]}")
}

voters() {
  local n out=()
  for n in "${NODES[@]}"; do out+=("$n@$KAFKA_HOST:$(port "$n" $CONTROLLER)"); done
  (IFS=,; echo "${out[*]}")
}

# Client port in the current node's server.properties (empty if none).
running_port() {
  sed -n "s#^advertised.listeners=PLAINTEXT://$KAFKA_HOST:\([0-9]*\).*#\1#p" "$PROPS" 2>/dev/null || true
}

# kafka_probe.py against node N: over mutual TLS to INTERNAL (a super user) in
# secure mode, so that it sees every topic; over PLAINTEXT otherwise.
probe() {  # probe NODE COMMAND [ARGS...]
  local n=$1; shift
  if [ "$SECURE" = 1 ]; then
    python3 "$PROBE" --tls "$TLS_DIR/broker.pem" "$TLS_DIR/broker.key" "$CA_FILE" \
      "$KAFKA_HOST:$(port "$n" $INTERNAL)" "$@"
  else
    python3 "$PROBE" "$KAFKA_HOST:$(port "$n" $CLIENT)" "$@"
  fi
}

# ---------------------------------------------------------------- TLS, users
password_file() { echo "$TLS_DIR/password-$1"; }

# One CA for the cluster (ca.pem), one certificate for all nodes (they all listen
# on 127.0.0.1): CN=kafka-broker, valid for 127.0.0.1/localhost, server and
# client use; the random passwords of the SCRAM users.
make_tls() {
  [ -f "$TLS_DIR/broker.p12" ] && return 0
  command -v openssl >/dev/null 2>&1 || die "openssl not found: needed for KAFKA_CLUSTER_SECURE=1"
  mkdir -p "$TLS_DIR" && chmod 700 "$TLS_DIR"
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=icp-scorer local cluster CA" \
    -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.pem.tmp" 2>/dev/null || die "could not make the CA"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$BROKER_PRINCIPAL" \
    -keyout "$TLS_DIR/broker.key" -out "$TLS_DIR/broker.csr" 2>/dev/null || die "could not make the node key"
  cat >"$TLS_DIR/node.ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth,clientAuth
subjectAltName=IP:127.0.0.1,DNS:localhost
authorityKeyIdentifier=keyid,issuer
subjectKeyIdentifier=hash
EOF
  openssl x509 -req -in "$TLS_DIR/broker.csr" -CA "$TLS_DIR/ca.pem.tmp" -CAkey "$TLS_DIR/ca.key" \
    -CAcreateserial -days 30 -extfile "$TLS_DIR/node.ext" -out "$TLS_DIR/broker.pem" 2>/dev/null \
    || die "could not sign the node certificate"
  python3 -c 'import secrets; print(secrets.token_hex(16))' >"$TLS_DIR/keystore-password"
  openssl pkcs12 -export -in "$TLS_DIR/broker.pem" -inkey "$TLS_DIR/broker.key" \
    -certfile "$TLS_DIR/ca.pem.tmp" -name broker -out "$TLS_DIR/broker.p12.tmp" \
    -passout "file:$TLS_DIR/keystore-password" || die "could not write the keystore"
  local user
  for user in "${USERS[@]}"; do
    # token_urlsafe: letters, digits, - and _ only (safe in --add-scram and JAAS)
    python3 -c 'import secrets; print(secrets.token_urlsafe(18))' >"$(password_file "$user")"
  done
  chmod 600 "$TLS_DIR"/*
  mv "$TLS_DIR/ca.pem.tmp" "$CA_FILE" && chmod 644 "$CA_FILE"
  mv "$TLS_DIR/broker.p12.tmp" "$TLS_DIR/broker.p12"
  log "secure mode: CA $CA_FILE, users ${USERS[*]}, passwords in $TLS_DIR/password-USER"
}

# tls/USER.properties: a Kafka client config (Java tools' --command-config) for
# each SCRAM user over SASL_SSL. Rewritten on every up (paths are absolute).
write_client_configs() {
  local user
  for user in "${USERS[@]}"; do
    (umask 077; cat >"$TLS_DIR/$user.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$user" password="$(cat "$(password_file "$user")")";
ssl.truststore.type=PEM
ssl.truststore.location=$CA_FILE
EOF
    )
  done
}

# ---------------------------------------------------------------- config
listener_props() {
  local n=$1
  if [ "$SECURE" = 1 ]; then
    cat <<EOF
listeners=PLAINTEXT://$KAFKA_HOST:$(port "$n" $CLIENT),CONTROLLER://$KAFKA_HOST:$(port "$n" $CONTROLLER),SASL_SSL://$KAFKA_HOST:$(port "$n" $SASL),INTERNAL://$KAFKA_HOST:$(port "$n" $INTERNAL)
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$(port "$n" $CLIENT),SASL_SSL://$KAFKA_HOST:$(port "$n" $SASL),INTERNAL://$KAFKA_HOST:$(port "$n" $INTERNAL)
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:SSL,SASL_SSL:SASL_SSL,INTERNAL:SSL
inter.broker.listener.name=INTERNAL

# Secure mode. Clients: SASL_SSL with SCRAM-SHA-512 (users ${USERS[*]}).
# PLAINTEXT stays for ApiVersions/broker lists only: its principal, User:ANONYMOUS,
# has no ACLs and is no super user. Controller and inter-broker connections use
# mutual TLS; the certificate's CN is the principal User:$BROKER_PRINCIPAL.
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:$BROKER_PRINCIPAL
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PKCS12
ssl.keystore.location=$TLS_DIR/broker.p12
ssl.keystore.password=$(cat "$TLS_DIR/keystore-password")
ssl.truststore.type=PEM
ssl.truststore.location=$CA_FILE
ssl.client.auth=none
listener.name.controller.ssl.client.auth=required
listener.name.internal.ssl.client.auth=required
ssl.principal.mapping.rules=RULE:^CN=([^,]+)\$/\$1/,DEFAULT
EOF
  else
    cat <<EOF
listeners=PLAINTEXT://$KAFKA_HOST:$(port "$n" $CLIENT),CONTROLLER://$KAFKA_HOST:$(port "$n" $CONTROLLER)
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$(port "$n" $CLIENT)
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
EOF
  fi
}

write_props() {  # for the current node
  mkdir -p "$NODE_DIR"
  cat >"$PROPS.tmp" <<EOF
# Written by deploy/local/cluster.sh on every up/start; edits are overwritten.
# Node $NODE of a three-node local KRaft cluster (each node broker+controller).
process.roles=broker,controller
node.id=$NODE
controller.quorum.voters=$(voters)
controller.listener.names=CONTROLLER
$(listener_props "$NODE")
log.dirs=$LOG_DIRS

num.partitions=1
auto.create.topics.enable=true
delete.topic.enable=true
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=3
offsets.topic.num.partitions=3
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=3
share.coordinator.state.topic.replication.factor=3
share.coordinator.state.topic.min.isr=2
share.coordinator.state.topic.num.partitions=3
group.initial.rebalance.delay.ms=0
# A node that stops heartbeating (kill -9) is fenced after 3 s (default 9 s):
# its partitions get new leaders and it leaves their ISRs that much sooner.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000

num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
log.retention.hours=168
log.retention.check.interval.ms=300000
EOF
  if [ -n "$KAFKA_CLUSTER_PROPS" ]; then
    printf '\n# KAFKA_CLUSTER_PROPS (later keys win)\n%s\n' "$KAFKA_CLUSTER_PROPS" >>"$PROPS.tmp"
  fi
  chmod 600 "$PROPS.tmp"   # holds the keystore password in secure mode
  mv "$PROPS.tmp" "$PROPS"
}

format_node() {  # format the current node's storage unless done (run in a subshell)
  [ -f "$LOG_DIRS/meta.properties" ] && return 0
  local scram=() user
  if [ "$SECURE" = 1 ]; then
    for user in "${USERS[@]}"; do
      scram+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(cat "$(password_file "$user")")]")
    done
  fi
  mkdir -p "$LOG_DIRS" "$LOG_DIR"
  # shellcheck disable=SC2086
  if ! "$(java_bin)" $TOOL_JVM_OPTS -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2.xml" \
        -Dkafka.logs.dir="$LOG_DIR" -cp "$(classpath)" \
        kafka.tools.StorageTool format --cluster-id "$(cat "$DIR/cluster.id")" --config "$PROPS" \
        "${scram[@]}" >"$NODE_DIR/format.out" 2>&1 9>&-; then
    cat "$NODE_DIR/format.out" >&2
    die "kafka-storage format failed for node $NODE"
  fi
}

# Format those of the given nodes that are not yet (in parallel: each is a JVM start).
format_all() {  # format_all NODE...
  local n fmt_pids=() todo=()
  for n in "$@"; do
    use_node "$n"
    [ -f "$LOG_DIRS/meta.properties" ] || todo+=("$n")
  done
  [ ${#todo[@]} -gt 0 ] || return 0
  if [ ! -f "$DIR/cluster.id" ]; then
    new_cluster_id >"$DIR/cluster.id.tmp" && mv "$DIR/cluster.id.tmp" "$DIR/cluster.id"
  fi
  log "formatting KRaft storage of node(s) ${todo[*]} (cluster id $(cat "$DIR/cluster.id"), $( [ "$SECURE" = 1 ] && echo secure || echo plain) mode)..."
  for n in "${todo[@]}"; do
    ( use_node "$n"; format_node ) &
    fmt_pids+=("$!")
  done
  local failed=0 pid
  for pid in "${fmt_pids[@]}"; do wait "$pid" || failed=1; done
  [ "$failed" = 0 ] || die "formatting failed (see above)"
  [ -f "$MODE_FILE" ] || { [ "$SECURE" = 1 ] && echo secure || echo plain; } >"$MODE_FILE"
}

check_mode() {  # an existing dir keeps the mode it was formatted with
  local want; if [ "$SECURE" = 1 ]; then want=secure; else want=plain; fi
  if [ -n "$SAVED_MODE" ] && [ "$SAVED_MODE" != "$want" ]; then
    die "$DIR was formatted in $SAVED_MODE mode, not $want: unset KAFKA_CLUSTER_SECURE, or 'down' and rm -rf it"
  fi
}

# Everything nodes need before their JVMs start (jars, TLS, config, storage).
prepare() {  # prepare NODE...
  check_mode
  fetch
  mkdir -p "$DIR" "$TOOL_LOG_DIR"
  if [ "$SECURE" = 1 ]; then make_tls; write_client_configs; fi
  local n
  for n in "$@"; do use_node "$n"; mkdir -p "$LOG_DIR"; write_props; done
  format_all "$@"
}

# ---------------------------------------------------------------- tools
run_tool() {  # run_tool CLASS ARGS... (one of Kafka's Java tools, quietly)
  # shellcheck disable=SC2086
  "$(java_bin)" $TOOL_JVM_OPTS -cp "$(classpath)" \
    -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2.xml" -Dkafka.logs.dir="$TOOL_LOG_DIR" "$@" 9>&-
}

admin_args() {  # --bootstrap-server (and --command-config) of a super user
  if [ "$SECURE" = 1 ]; then
    echo "--bootstrap-server $(bootstrap $SASL) --command-config $TLS_DIR/admin.properties"
  else
    echo "--bootstrap-server $(bootstrap)"
  fi
}

# ---------------------------------------------------------------- waiting
# NODE_OFF[n]: size of node n's server.log when this script started it (empty: not started here)
declare -a NODE_OFF=()

node_failed() {  # node_failed N MESSAGE -> show its log, stop what this run started, die
  use_node "$1"
  show_log_tail "${NODE_OFF[$1]:-0}"
  stop_started
  die "$2"
}

# Stop the nodes this run started (after a failed start).
stop_started() {
  local n nodes=()
  for n in "${NODES[@]}"; do [ -z "${NODE_OFF[$n]:-}" ] || nodes+=("$n"); done
  [ ${#nodes[@]} -eq 0 ] || stop_nodes "${nodes[@]}"
}

# Until node N answers: logged "Kafka Server started" (when started here) and ApiVersions.
node_ready() {  # node_ready N -> 0 ready, 1 not yet; dies if its JVM exited
  local n=$1 pid
  use_node "$n"
  pid=$(cat "$PID_FILE" 2>/dev/null || true)
  if [ -z "$pid" ] || ! alive "$pid"; then
    rm -f "$PID_FILE"
    node_failed "$n" "node $n (pid ${pid:-?}) exited during startup (logs in $LOG_DIR)"
  fi
  if [ -n "${NODE_OFF[$n]:-}" ]; then started_since "${NODE_OFF[$n]}" || return 1; fi
  api_ready "$KAFKA_PORT"
}

# WAIT_DETAIL: what COMMAND last found missing, for the error message.
wait_until() {  # wait_until DEADLINE WHAT COMMAND... -> polls COMMAND every 0.2 s
  local deadline=$1 what=$2; shift 2
  WAIT_DETAIL=
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      stop_started
      die "$what: not within ${KAFKA_START_TIMEOUT}s${WAIT_DETAIL:+ ($WAIT_DETAIL)} (KAFKA_START_TIMEOUT; logs in $DIR/node*/logs)"
    fi
    sleep 0.2
  done
}

all_nodes_ready() {
  local n
  for n in "${NODES[@]}"; do node_ready "$n" || return 1; done
}

# Every node's metadata lists all the brokers as live (registered, unfenced).
all_brokers_live() {
  local n got
  for n in "${NODES[@]}"; do
    got=$(probe "$n" brokers 2>&1)
    WAIT_DETAIL="node $n sees brokers: $got"
    [ "$got" = "${NODES[*]}" ] || return 1
  done
}

# Node N is live in another node's metadata and back in every ISR it belongs to.
rejoined() {  # rejoined N
  local n=$1 other brokers behind
  for other in "${NODES[@]}"; do
    [ "$other" != "$n" ] || continue
    use_node "$other"
    [ -n "$(broker_pid)" ] || continue
    brokers=$(probe "$other" brokers 2>/dev/null) || continue
    case " $brokers " in *" $n "*) ;; *) return 1 ;; esac
    behind=$(probe "$other" behind "$n" 2>/dev/null) || return 1
    [ -z "$behind" ] || { WAIT_DETAIL="not yet in the ISR of $behind"; return 1; }
    return 0
  done
  return 1   # no other node to ask
}

# The quorum as Kafka's own tool sees it: 3 voters and a leader; in secure mode
# this also logs in as admin over SASL_SSL on every node (BrokerApiVersionsCommand
# connects to each broker it finds). Prints "leader L, voters V".
quorum_ok() {
  local out leader voters
  # shellcheck disable=SC2046
  out=$(run_tool org.apache.kafka.tools.MetadataQuorumCommand $(admin_args) describe --status 2>&1) || return 1
  leader=$(sed -n 's/^LeaderId:[[:space:]]*//p' <<<"$out")
  voters=$(sed -n 's/^CurrentVoters:[[:space:]]*//p' <<<"$out" | grep -o '"id": [0-9]*' | grep -o '[0-9]*' | sort | tr '\n' ' ')
  [ -n "$leader" ] && [ "$leader" != -1 ] && [ "${voters% }" = "${NODES[*]}" ] || return 1
  if [ "$SECURE" = 1 ]; then
    # shellcheck disable=SC2046
    out=$(run_tool org.apache.kafka.tools.BrokerApiVersionsCommand $(admin_args) 2>&1) || return 1
    [ "$(grep -c '^127\.0\.0\.1:[0-9]* (id: [0-9]* .*isFenced: false) -> (' <<<"$out")" = "${#NODES[@]}" ] || return 1
  fi
  QUORUM="leader $leader, voters ${voters% }"
}

# ---------------------------------------------------------------- stopping
# A node's broker does a controlled shutdown on SIGTERM: the active controller
# must approve it. A node left alone has no quorum, so no controller, and would
# wait 5 minutes: once the other nodes are gone, a node whose log has no
# approval since SIGTERM is SIGKILLed (its logs are recovered at next start).
approved_since() {  # approved_since LOG_OFFSET (current node)
  grep -q 'asked us to exit controlled shutdown' < <(tail -c +"$(($1 + 1))" "$SERVER_LOG" 2>/dev/null)
}

# SIGTERM the given nodes at once (their controlled shutdowns overlap while the
# quorum still stands) and wait until they exit; SIGKILL after KAFKA_STOP_TIMEOUT.
stop_nodes() {  # stop_nodes NODE...
  local n pid t0 left=() others=() deadline killed=0
  local -A pids=() offs=()
  t0=$(now_ms)
  for n in "$@"; do
    use_node "$n"
    pid=$(broker_pid)
    rm -f "$PID_FILE"
    [ -n "$pid" ] || continue
    pids[$n]=$pid
    offs[$n]=$(log_size)
    left+=("$n")
  done
  if [ ${#left[@]} -eq 0 ]; then
    log "node(s) $* not running ($DIR)"
    return 0
  fi
  for n in "${NODES[@]}"; do   # nodes that keep running
    [ -n "${pids[$n]:-}" ] && continue
    use_node "$n"
    pid=$(broker_pid)
    [ -z "$pid" ] || others+=("$pid")
  done
  local stopping=("${left[@]}")
  log "stopping node(s) ${stopping[*]} (pids ${pids[*]}, controlled shutdown)..."
  for n in "${left[@]}"; do kill -TERM "${pids[$n]}" 2>/dev/null || true; done
  deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  while [ ${#left[@]} -gt 0 ]; do
    local still=()
    for n in "${left[@]}"; do alive "${pids[$n]}" && still+=("$n"); done
    left=("${still[@]}")
    [ ${#left[@]} -gt 0 ] || break
    if [ ${#left[@]} -eq 1 ]; then
      n=${left[0]}
      local alone=1
      for pid in "${others[@]}"; do alive "$pid" && alone=0; done
      use_node "$n"
      if [ "$alone" = 1 ] && ! approved_since "${offs[$n]}"; then
        log "node $n is the last one: no quorum can approve its controlled shutdown: SIGKILL"
        kill -KILL "${pids[$n]}" 2>/dev/null || true
      fi
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      [ "$killed" = 0 ] || die "node(s) ${left[*]} still there 10 s after SIGKILL"
      log "node(s) ${left[*]} still running after ${KAFKA_STOP_TIMEOUT}s, sending SIGKILL"
      for n in "${left[@]}"; do kill -KILL "${pids[$n]}" 2>/dev/null || true; done
      killed=1 deadline=$((SECONDS + 10))
    fi
    sleep 0.1
  done
  log "stopped node(s) ${stopping[*]} ($(elapsed "$t0") s)"
}

# ---------------------------------------------------------------- commands
check_ports() {  # check_ports NODE... -> dies if one of their ports is taken
  local n p
  for n in "$@"; do
    for p in $(node_ports "$n"); do
      port_open "$p" && die "port $KAFKA_HOST:$p (node $n) is already in use by another process (set KAFKA_CLUSTER_PORT)"
    done
  done
  return 0
}

# Start node N's JVM (after prepare); remembers where its log was.
launch_node() {  # launch_node N
  local n=$1
  use_node "$n"
  NODE_OFF[n]=$(log_size)
  launch_broker
  log "starting node $n (pid $(cat "$PID_FILE")): $KAFKA_HOST:$KAFKA_PORT, data in $NODE_DIR"
}

cmd_up() {
  local t0 n pid rport started=()
  t0=$(now_ms)
  mkdir -p "$DIR"
  lock "$LOCK_FILE"
  for n in "${NODES[@]}"; do
    use_node "$n"
    pid=$(broker_pid)
    if [ -n "$pid" ]; then
      rport=$(running_port)
      if [ -n "$rport" ] && [ "$rport" != "$KAFKA_PORT" ]; then
        die "node $n of $DIR (pid $pid) runs on port $rport, not $KAFKA_PORT: 'cluster.sh down' it first or use another KAFKA_CLUSTER_DIR"
      fi
    else
      rm -f "$PID_FILE"
      started+=("$n")
    fi
  done
  if [ ${#started[@]} -eq 0 ] && all_nodes_ready && all_brokers_live; then
    log "cluster already running: $(bootstrap)"
    return 0
  fi
  if [ ${#started[@]} -gt 0 ]; then
    check_ports "${started[@]}"
    prepare "${started[@]}"
    for n in "${started[@]}"; do launch_node "$n"; done
  fi
  local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  wait_until "$deadline" "nodes serving clients" all_nodes_ready
  log "all nodes serve clients ($(elapsed "$t0") s); waiting for 3 live brokers..."
  wait_until "$deadline" "3 live brokers in every node's metadata" all_brokers_live
  wait_until "$deadline" "a 3-voter quorum with a leader" quorum_ok
  log "cluster ready ($(elapsed "$t0") s): $QUORUM; bootstrap $(bootstrap)$( [ "$SECURE" = 1 ] && echo ", SASL_SSL $(bootstrap $SASL)")"
}

cmd_start() {  # start NODE: on its data; wait until it serves clients and has rejoined
  check_node "${1:-}"
  local n=$1 t0 pid
  t0=$(now_ms)
  [ -f "$DIR/node$n/data/meta.properties" ] || die "node $n of $DIR was never formatted: run 'cluster.sh up' first"
  lock "$LOCK_FILE"
  use_node "$n"
  pid=$(broker_pid)
  if [ -n "$pid" ]; then
    log "node $n already running (pid $pid)"
  else
    rm -f "$PID_FILE"
    local other running=0
    for other in "${NODES[@]}"; do
      [ "$other" = "$n" ] || { use_node "$other"; [ -z "$(broker_pid)" ] || running=1; }
    done
    [ "$running" = 1 ] || die "no other node runs: node $n alone has no quorum to join ('cluster.sh up' starts them all)"
    use_node "$n"
    check_ports "$n"
    prepare "$n"
    launch_node "$n"
  fi
  local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  wait_until "$deadline" "node $n serving clients" node_ready "$n"
  log "node $n serves clients ($(elapsed "$t0") s); waiting until it has rejoined..."
  wait_until "$deadline" "node $n live in the cluster and back in its ISRs" rejoined "$n"
  log "node $n rejoined ($(elapsed "$t0") s)"
}

cmd_stop() {  # stop NODE: controlled shutdown (SIGTERM), wait for exit
  check_node "${1:-}"
  [ -d "$DIR" ] && lock "$LOCK_FILE"
  stop_nodes "$1"
}

cmd_kill() {  # kill NODE: SIGKILL, wait until gone
  check_node "${1:-}"
  local n=$1 t0 pid
  [ -d "$DIR" ] && lock "$LOCK_FILE"
  use_node "$n"
  pid=$(broker_pid)
  if [ -z "$pid" ]; then
    rm -f "$PID_FILE"
    log "node $n not running"
    return 0
  fi
  t0=$(now_ms)
  kill -KILL "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + 10))
  while alive "$pid" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.05; done
  alive "$pid" && die "node $n (pid $pid) still there 10 s after SIGKILL"
  rm -f "$PID_FILE"
  log "node $n killed (pid $pid, $(elapsed "$t0") s)"
}

cmd_down() {
  [ -d "$DIR" ] || { log "cluster not running ($DIR does not exist)"; return 0; }
  lock "$LOCK_FILE"
  stop_nodes "${NODES[@]}"
}

cmd_status() {  # exit 0: all nodes serve clients, 3: none runs, 1: otherwise
  local n pid up=0 answering=0 mode ports
  mode=${SAVED_MODE:-not formatted}
  echo "cluster $DIR ($mode), base port $KAFKA_CLUSTER_PORT"
  for n in "${NODES[@]}"; do
    use_node "$n"
    pid=$(broker_pid)
    ports="client $(port "$n" $CLIENT), controller $(port "$n" $CONTROLLER)"
    [ "$SECURE" = 1 ] && ports="$ports, sasl_ssl $(port "$n" $SASL), internal $(port "$n" $INTERNAL)"
    if [ -z "$pid" ]; then
      echo "node $n: not running ($ports)"
    elif api_ready "$KAFKA_PORT"; then
      echo "node $n: running (pid $pid), serving ($ports)"
      up=$((up + 1)); answering=$((answering + 1))
    else
      echo "node $n: running (pid $pid), not answering ($ports)"
      up=$((up + 1))
    fi
  done
  echo "bootstrap: $(bootstrap)"
  [ "$SECURE" = 1 ] && echo "sasl_ssl bootstrap: $(bootstrap $SASL) (CA $CA_FILE, passwords $TLS_DIR/password-{$(IFS=,; echo "${USERS[*]}")})"
  [ "$answering" = ${#NODES[@]} ] && return 0
  [ "$up" = 0 ] && return 3
  return 1
}

cmd_quorum() {  # Kafka's view of the quorum and of each voter's lag
  fetch
  mkdir -p "$TOOL_LOG_DIR"
  # shellcheck disable=SC2046
  run_tool org.apache.kafka.tools.MetadataQuorumCommand $(admin_args) describe --status
  echo
  # shellcheck disable=SC2046
  run_tool org.apache.kafka.tools.MetadataQuorumCommand $(admin_args) describe --replication
}

usage() {
  cat >&2 <<EOF
usage: $(basename "$0") COMMAND
  up            start the nodes that are not running (formats a new dir) and wait
                until all 3 serve clients, are live brokers and form a 3-voter quorum
  down          stop every node (SIGTERM to all at once; SIGKILL after KAFKA_STOP_TIMEOUT)
  status        per node: pid, ports, running or not (exit 0 all serve, 3 none runs, 1 else)
  kill N        SIGKILL node N (1..3) and wait until it is gone
  stop N        controlled shutdown of node N (SIGTERM), wait for exit
  start N       start node N on its data; wait until it serves clients, is live in
                the cluster's metadata again and back in every ISR it belongs to
  quorum        MetadataQuorumCommand describe --status and --replication
  bootstrap [sasl]  print host:port,... of the PLAINTEXT (or SASL_SSL) listeners
  logs N        tail -f node N's log
  tool CLASS [ARGS...]  run one of Kafka's Java tools from the cached jars, e.g.
                tool org.apache.kafka.tools.TopicCommand --bootstrap-server \$(cluster.sh bootstrap) --list
EOF
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  kill) cmd_kill "${2:-}" ;;
  stop) cmd_stop "${2:-}" ;;
  start) cmd_start "${2:-}" ;;
  quorum) cmd_quorum ;;
  bootstrap) if [ "${2:-}" = sasl ]; then bootstrap $SASL; else bootstrap; fi ;;
  logs) check_node "${2:-}"; use_node "$2"; exec tail -n 100 -f "$SERVER_LOG" ;;
  tool) shift; fetch; mkdir -p "$TOOL_LOG_DIR"; run_tool "$@" ;;
  -h|--help|help) usage ;;
  *) usage; exit 2 ;;
esac
