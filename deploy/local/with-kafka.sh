#!/usr/bin/env bash
# Run a command with a local broker: start deploy/local/kafka.sh unless one runs
# (or SCORER_BROKER points elsewhere), export SCORER_BROKER, run the command, and
# stop the broker again if this script started it (also on Ctrl-C). The local
# broker is a single node: topics get one copy (SCORER_REPLICATION_FACTOR=1
# unless set), where the scorer's default is a production cluster's 3.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
started=0
if [ -z "${SCORER_BROKER:-}" ]; then
  if ! bash "$HERE/kafka.sh" status >/dev/null 2>&1; then
    bash "$HERE/kafka.sh" up || exit 1
    started=1
  fi
  export SCORER_BROKER="kafka://127.0.0.1:${KAFKA_PORT:-9092}"
  export SCORER_REPLICATION_FACTOR="${SCORER_REPLICATION_FACTOR:-1}"
fi
stop() { [ "$started" = 1 ] && bash "$HERE/kafka.sh" down; }
trap stop EXIT
trap 'exit 130' INT TERM
"$@"
