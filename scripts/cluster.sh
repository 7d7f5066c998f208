#!/usr/bin/env bash
# Starts a three-broker Sluice cluster on 127.0.0.1 and waits; Ctrl-C (or
# SIGTERM) stops all three with a controlled shutdown.
#
#   broker  Kafka             internal (quorum)  metrics           data
#   0       127.0.0.1:9092    127.0.0.1:9093     127.0.0.1:9464    ./sluice-cluster/0
#   1       127.0.0.1:19092   127.0.0.1:19093    127.0.0.1:19464   ./sluice-cluster/1
#   2       127.0.0.1:29092   127.0.0.1:29093    127.0.0.1:29464   ./sluice-cluster/2
#
# Topics get three replicas and min.insync.replicas=2 by default, so one
# broker can be stopped without losing or refusing an acks=all write.
#
# Usage: scripts/cluster.sh [DATA_DIR]   (builds the broker in release mode first)
set -euo pipefail
cd "$(dirname "$0")/.."

data="${1:-sluice-cluster}"
cargo build --release -p sluice-broker
bin=target/release/sluice-broker
voters="0@127.0.0.1:9093,1@127.0.0.1:19093,2@127.0.0.1:29093"
pids=()

stop() {
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  wait
}
trap stop INT TERM

for id in 0 1 2; do
  prefix=$([[ $id == 0 ]] && echo "" || echo "${id}")
  mkdir -p "$data/$id"
  "$bin" \
    --node-id "$id" \
    --listeners "127.0.0.1:${prefix}9092" \
    --metrics-listener "127.0.0.1:${prefix}9464" \
    --internal-listener "127.0.0.1:${prefix}9093" \
    --controller-quorum-voters "$voters" \
    --log-dirs "$data/$id" \
    --default-replication-factor 3 \
    --min-insync-replicas 2 \
    >"$data/$id.log" 2>&1 &
  pids+=($!)
done
echo "three brokers running: bootstrap 127.0.0.1:9092,127.0.0.1:19092,127.0.0.1:29092"
echo "logs in $data/{0,1,2}.log; Ctrl-C stops them"
wait
