#!/usr/bin/env bash
# The README's Kubernetes tour as a test, each step asserting what a person
# would check. Runs against the cluster KUBECONFIG names (the local control
# plane of e2e/k8s/control-plane.sh in the test command); kcat and the load
# run on this machine and reach the brokers at the addresses they advertise.
#
#   KUBECONFIG=... e2e/k8s/tour.sh
#
# KUBECTL, HELM, KCAT and PYTHON name the tools (default: .tools/bin,
# kcat, .venv/bin/python).
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
kubectl="${KUBECTL:-$repo/.tools/bin/kubectl}"
helm="${HELM:-$repo/.tools/bin/helm}"
kcat="${KCAT:-kcat}"
python="${PYTHON:-$repo/.venv/bin/python}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
checks=0

step() { printf '\n--> tour: %s\n' "$*"; }
ok() { checks=$((checks + 1)); printf '    ok: %s\n' "$*"; }
fail() {
  printf '    FAILED: %s\n' "$*" >&2
  "$kubectl" get kc,kt,sts,pods,pvc -o wide >&2 || true
  "$kubectl" get kc demo -o yaml >&2 || true
  "$kubectl" get events --sort-by=.lastTimestamp >&2 | tail -n 30 || true
  "$kubectl" -n sluice-system logs deploy/sluice-operator >&2 2>/dev/null | tail -n 40 || true
  exit 1
}
# until SECS DESCRIPTION COMMAND...: retries COMMAND every second.
until_ok() {
  local secs="$1" what="$2"
  shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < end)) || fail "$what (not within ${secs}s)"
    sleep 1
  done
  ok "$what"
}
jp() { "$kubectl" get "$1" -o "jsonpath=$2"; }
ready_brokers_are() { [[ "$(jp kc/demo '{.status.readyReplicas}')" == "$1" ]] &&
  [[ "$(jp kc/demo '{.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }

step "helm install the operator (it runs as a pod, with the chart's ServiceAccount and RBAC)"
"$helm" install sluice-operator charts/sluice-operator --namespace sluice-system --create-namespace \
  --wait --timeout 180s >"$work/helm.txt" || fail "helm install: $(cat "$work/helm.txt")"
grep -q "STATUS: deployed" "$work/helm.txt" || fail "helm install did not deploy: $(cat "$work/helm.txt")"
ok "helm install: STATUS: deployed"
"$kubectl" get crd kafkaclusters.sluice.dev topics.sluice.dev >/dev/null || fail "the chart installed no CRDs"
ok "the chart installed the CRDs"

step "kubectl explain kc.spec"
"$kubectl" explain kc.spec >"$work/explain.txt" || fail "kubectl explain kc.spec"
for field in replicas image storage rollingUpdate; do
  grep -q "^  $field" "$work/explain.txt" || fail "kubectl explain kc.spec has no $field: $(cat "$work/explain.txt")"
done
ok "kubectl explain kc.spec documents replicas, image, storage, rollingUpdate"

step "invalid objects are refused by the API server itself"
refused() {
  local file="$1" message="$2"
  if "$kubectl" apply -f "$file" >"$work/refused.txt" 2>&1; then
    fail "the API server accepted $(cat "$file")"
  fi
  grep -q "$message" "$work/refused.txt" || fail "refusal without '$message': $(cat "$work/refused.txt")"
  ok "refused: $(tail -n 1 "$work/refused.txt")"
}
sed 's/^  replicas: 3/  replicas: 0/; s/^  name: demo/  name: bad/' examples/kafkacluster.yaml >"$work/bad-kc.yaml"
refused "$work/bad-kc.yaml" "a cluster needs at least one broker"
sed 's/^  partitions: 6/  partitions: 0/; s/^  name: orders/  name: bad/' examples/topic.yaml >"$work/bad-topic.yaml"
refused "$work/bad-topic.yaml" "a topic needs at least one partition"

step "kubectl apply -f examples/ -> KafkaCluster Ready, Topic Ready"
"$kubectl" apply -f examples/kafkacluster.yaml -f examples/topic.yaml >/dev/null
until_ok 300 "KafkaCluster demo Ready with 3 ready brokers" ready_brokers_are 3
until_ok 120 "Topic orders Ready" bash -c \
  "[[ \$('$kubectl' get kt orders -o 'jsonpath={.status.conditions[?(@.type==\"Ready\")].status}') == True ]]"
"$kubectl" get kc,kt | tee "$work/get.txt"
grep -Eq '^kafkacluster.sluice.dev/demo +3 +3 +True ' "$work/get.txt" ||
  fail "kubectl get kc: want 'demo  3  3  True', got: $(cat "$work/get.txt")"
ok "kubectl get kc shows Desired 3, Ready 3, Status True"
grep -Eq '^topic.sluice.dev/orders +demo +6 +3 ' "$work/get.txt" ||
  fail "kubectl get kt: want 'orders  demo  6  3', got: $(cat "$work/get.txt")"
ok "kubectl get kt shows cluster demo, 6 partitions, replication factor 3"
"$kubectl" get sts demo -o 'jsonpath={.status.readyReplicas}' | grep -qx 3 || fail "StatefulSet demo not at 3 ready"
ok "StatefulSet demo has 3 ready pods"

step "kcat through the advertised addresses"
bootstrap="$(jp kc/demo '{.status.bootstrapServers}')"
[[ -n "$bootstrap" ]] || fail "status.bootstrapServers is empty"
"$kcat" -b "$bootstrap" -L -t orders >"$work/meta.txt" 2>&1 || fail "kcat -L: $(cat "$work/meta.txt")"
grep -q " 3 brokers:" "$work/meta.txt" || fail "kcat -L does not list 3 brokers: $(cat "$work/meta.txt")"
grep -q 'topic "orders" with 6 partitions' "$work/meta.txt" || fail "orders has not 6 partitions: $(cat "$work/meta.txt")"
grep -q "demo-0.demo-brokers.default.svc:9092" "$work/meta.txt" || fail "brokers not at their pod names: $(cat "$work/meta.txt")"
ok "kcat -L: 3 brokers at their pod DNS names, orders with 6 partitions"
printf 'user-1:signed up\nuser-2:signed in\n' |
  "$kcat" -b "$bootstrap" -P -t orders -K: -X acks=all || fail "kcat produce"
"$kcat" -b "$bootstrap" -C -t orders -o beginning -e -q -f '%k=%s\n' | sort >"$work/read.txt"
[[ "$(cat "$work/read.txt")" == $'user-1=signed up\nuser-2=signed in' ]] ||
  fail "kcat read back: $(cat "$work/read.txt")"
ok "kcat produced two records with acks=all and read them back"

# An acks=all load runs through every change from here on; its check reads
# every acknowledged record back at the end.
start_load() {
  rm -f "$work/stop"
  "$python" e2e/k8s/acked_load.py produce "$bootstrap" orders "$work/acked.txt" "$work/stop" >"$work/load.txt" 2>&1 &
  load_pid=$!
  until_ok 60 "the acks=all load is acknowledged" test -s "$work/acked.txt"
}
stop_load() {
  touch "$work/stop"
  wait "$load_pid" || fail "the load: $(cat "$work/load.txt")"
  ok "$(tail -n 1 "$work/load.txt")"
  "$python" e2e/k8s/acked_load.py check "$bootstrap" orders "$work/acked.txt" >"$work/check.txt" 2>&1 ||
    fail "$(cat "$work/check.txt")"
  ok "$(cat "$work/check.txt")"
}

step "kubectl scale kc demo --replicas=5, then back to 3, under an acks=all load"
start_load
"$kubectl" scale kc demo --replicas=5 >/dev/null
until_ok 300 "5 ready brokers" ready_brokers_are 5
until_ok 300 "partitions moved onto the new brokers (demo-3 and demo-4 lead or follow)" bash -c \
  "'$kcat' -b '$bootstrap' -L -t orders | grep -Eq 'replicas: .*\\b(3|4)\\b'"
"$kubectl" scale kc demo --replicas=3 >/dev/null
until_ok 420 "back to 3 brokers, StatefulSet shrunk" bash -c \
  "[[ \$('$kubectl' get sts demo -o 'jsonpath={.spec.replicas}') == 3 ]] && [[ \$('$kubectl' get kc demo -o 'jsonpath={.status.readyReplicas}') == 3 ]]"
stop_load

step "kubectl delete pod demo-1 -> recreated by the StatefulSet controller, with its data"
old_uid="$(jp pod/demo-1 '{.metadata.uid}')"
"$kubectl" delete pod demo-1 --wait=false >/dev/null
until_ok 180 "demo-1 recreated and Ready" bash -c \
  "[[ \$('$kubectl' get pod demo-1 -o 'jsonpath={.metadata.uid}') != '$old_uid' ]] && [[ \$('$kubectl' get pod demo-1 -o 'jsonpath={.status.conditions[?(@.type==\"Ready\")].status}') == True ]]"
until_ok 120 "KafkaCluster Ready again" ready_brokers_are 3
"$python" e2e/k8s/acked_load.py check "$bootstrap" orders "$work/acked.txt" >"$work/check.txt" 2>&1 ||
  fail "$(cat "$work/check.txt")"
ok "after the pod came back: $(cat "$work/check.txt")"

echo
echo "tour: $checks checks passed"
