#!/usr/bin/env bash
# Apache Kafka itself as a peer process on loopback: the oracle the tests
# compare Sluice with, and the peer the benchmark measures beside it.
#
#   e2e/kafka/kafka.sh classpath        resolve the pinned Kafka (pom.xml)
#                                       with Maven; prints the classpath file
#   e2e/kafka/kafka.sh start DIR PORTS CONTROLLER_PORTS
#                                       start one KRaft node in combined mode
#                                       (broker and controller, all voting)
#                                       per client port of the comma list
#                                       PORTS, with controller ports from
#                                       CONTROLLER_PORTS, node ids 0.., data
#                                       under DIR; waits until Metadata lists
#                                       every node; prints the bootstrap list
#   e2e/kafka/kafka.sh run DIR PORT CONTROLLER_PORT
#                                       one node in the foreground (exec's
#                                       the JVM): a peer of sluice-bench compare
#   e2e/kafka/kafka.sh node DIR ID PORT CONTROLLER_PORT VOTERS CLUSTER
#                                       node ID of a cluster in the foreground
#                                       (exec's the JVM), VOTERS as Kafka's
#                                       controller.quorum.voters; formatted
#                                       on its first start only (a restart
#                                       keeps its log), with a cluster id
#                                       derived from the token CLUSTER: the
#                                       nodes of sluice-bench compare's
#                                       three-broker rounds
#   e2e/kafka/kafka.sh stop DIR         SIGTERM, wait, SIGKILL after 30 s
#
# Kafka runs with its shipped defaults (heap as kafka-server-start.sh sets
# it), except what a cluster of N on one machine needs: internal topics'
# replication factor min(N, 3), and no initial group rebalance delay.
# KAFKA_HEAP_OPTS overrides the heap; KAFKA_EXTRA_PROPERTIES names a file
# of settings added to every node's. Needs java (17+), mvn and kcat.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
tools="$repo/.tools/kafka"

die() { echo "kafka.sh: $*" >&2; exit 1; }

classpath() {
  mkdir -p "$tools"
  local stamp="$tools/pom.sha256" cp="$tools/classpath.txt"
  local want
  want="$(sha256sum "$here/pom.xml" | cut -d' ' -f1)"
  if [[ ! -s "$cp" || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "kafka.sh: resolving Apache Kafka with Maven ($here/pom.xml)" >&2
    mvn -q -B -Dstyle.color=never -f "$here/pom.xml" dependency:build-classpath -Dmdep.outputFile="$cp" >&2 ||
      die "mvn could not resolve $here/pom.xml"
    echo "$want" >"$stamp"
  fi
  echo "$cp"
}

# configure NODE_DIR ID PORT CONTROLLER_PORT VOTERS RF CLUSTER_ID CLASSPATH:
# writes one node's server.properties and formats its log directory.
configure() {
  local node="$1" i="$2" port="$3" controller="$4" voters="$5" rf="$6" cluster_id="$7" cp="$8"
  mkdir -p "$node"
  cat >"$node/server.properties" <<EOF
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$node/data
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$((rf < 2 ? rf : 2))
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$((rf < 2 ? rf : 2))
group.initial.rebalance.delay.ms=0
EOF
  # KAFKA_EXTRA_PROPERTIES: a file of settings added after these (a key
  # given again there wins), for a peer configured otherwise (listeners,
  # SASL, an authorizer).
  if [[ -n "${KAFKA_EXTRA_PROPERTIES:-}" ]]; then
    cat "$KAFKA_EXTRA_PROPERTIES" >>"$node/server.properties"
  fi
  java -cp "$cp" kafka.tools.StorageTool format -t "$cluster_id" -c "$node/server.properties" \
    >"$node/format.log" 2>&1 || die "formatting node $i: $(tail -n 5 "$node/format.log")"
}

# foreground NODE_DIR CLASSPATH: the node's JVM in place of this shell.
foreground() {
  # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS is a list of JVM flags
  exec java ${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Djava.awt.headless=true -cp "$2" kafka.Kafka "$1/server.properties"
}

# run DIR PORT CONTROLLER_PORT: one node in the foreground (the process is
# Kafka's JVM), as `sluice-bench compare` starts its peers.
run() {
  local dir="$1" port="$2" controller="$3" cp cluster_id
  cp="$(cat "$(classpath)")"
  cluster_id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
  [[ -n "$cluster_id" ]] || die "kafka.tools.StorageTool random-uuid gave nothing"
  configure "$dir" 0 "$port" "$controller" "0@127.0.0.1:$controller" 1 "$cluster_id" "$cp"
  foreground "$dir" "$cp"
}

# node DIR ID PORT CONTROLLER_PORT VOTERS CLUSTER: one node of a cluster in
# the foreground. Every node given the same CLUSTER token gets the same
# cluster id (Kafka's: 16 bytes, URL-safe base64), so the nodes need not
# share a file; a node already formatted starts on its log as it is.
node() {
  local dir="$1" i="$2" port="$3" controller="$4" voters="$5" token="$6" cp cluster_id n
  cp="$(cat "$(classpath)")"
  if [[ ! -e "$dir/data/meta.properties" ]]; then
    cluster_id="$(printf '%s' "$token" | sha256sum | cut -c1-32 | python3 -c \
      'import base64, sys; print(base64.urlsafe_b64encode(bytes.fromhex(sys.stdin.read().strip())).decode().rstrip("="))')"
    n="$(tr ',' '\n' <<<"$voters" | grep -c .)"
    configure "$dir" "$i" "$port" "$controller" "$voters" $((n < 3 ? n : 3)) "$cluster_id" "$cp"
  fi
  foreground "$dir" "$cp"
}

start() {
  local dir="$1" ports controllers
  IFS=, read -r -a ports <<<"$2"
  IFS=, read -r -a controllers <<<"$3"
  local n="${#ports[@]}"
  ((n >= 1 && n == ${#controllers[@]})) || die "one controller port per client port: $2 / $3"
  [[ -e "$dir/pids" ]] && die "$dir already has running nodes (kafka.sh stop $dir)"
  local cp
  cp="$(cat "$(classpath)")"
  mkdir -p "$dir"
  local voters="" bootstrap="" rf=$((n < 3 ? n : 3)) i
  for ((i = 0; i < n; i++)); do
    voters+="${voters:+,}$i@127.0.0.1:${controllers[i]}"
    bootstrap+="${bootstrap:+,}127.0.0.1:${ports[i]}"
  done
  local cluster_id
  cluster_id="$(java -cp "$cp" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
  [[ -n "$cluster_id" ]] || die "kafka.tools.StorageTool random-uuid gave nothing"
  for ((i = 0; i < n; i++)); do
    configure "$dir/node-$i" "$i" "${ports[i]}" "${controllers[i]}" "$voters" "$rf" "$cluster_id" "$cp"
  done
  : >"$dir/pids"
  for ((i = 0; i < n; i++)); do
    local node="$dir/node-$i"
    # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS is a list of JVM flags
    nohup java ${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -Djava.awt.headless=true -cp "$cp" kafka.Kafka "$node/server.properties" \
      >"$node/kafka.log" 2>&1 </dev/null &
    echo "$!" >>"$dir/pids"
  done
  echo "$bootstrap" >"$dir/bootstrap"
  local deadline=$((SECONDS + 120))
  until kcat -b "$bootstrap" -L -m 5 2>/dev/null | grep -q "^ $n brokers:"; do
    if ((SECONDS > deadline)); then
      tail -n 20 "$dir"/node-*/kafka.log >&2
      stop "$dir"
      die "Apache Kafka did not list $n brokers within 120 s"
    fi
    while read -r pid; do
      kill -0 "$pid" 2>/dev/null || {
        tail -n 20 "$dir"/node-*/kafka.log >&2
        stop "$dir"
        die "an Apache Kafka node exited at start"
      }
    done <"$dir/pids"
    sleep 1
  done
  echo "$bootstrap"
}

stop() {
  local dir="$1" pid
  [[ -e "$dir/pids" ]] || return 0
  while read -r pid; do kill -TERM "$pid" 2>/dev/null || true; done <"$dir/pids"
  local deadline=$((SECONDS + 30))
  while read -r pid; do
    while kill -0 "$pid" 2>/dev/null; do
      if ((SECONDS > deadline)); then
        kill -KILL "$pid" 2>/dev/null || true
        break
      fi
      sleep 0.2
    done
  done <"$dir/pids"
  rm -f "$dir/pids"
}

case "${1:-}" in
  classpath) classpath ;;
  start) (($# == 4)) || die "usage: kafka.sh start DIR PORTS CONTROLLER_PORTS"; start "$2" "$3" "$4" ;;
  stop) (($# == 2)) || die "usage: kafka.sh stop DIR"; stop "$2" ;;
  run) (($# == 4)) || die "usage: kafka.sh run DIR PORT CONTROLLER_PORT"; run "$2" "$3" "$4" ;;
  node)
    (($# == 7)) || die "usage: kafka.sh node DIR ID PORT CONTROLLER_PORT VOTERS CLUSTER"
    node "$2" "$3" "$4" "$5" "$6" "$7"
    ;;
  *) die "usage: kafka.sh classpath | start DIR PORTS CONTROLLER_PORTS | run DIR PORT CONTROLLER_PORT | node DIR ID PORT CONTROLLER_PORT VOTERS CLUSTER | stop DIR" ;;
esac
