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
# The control plane's directory: process-kubelet stops a node by a file there.
: "${SLUICE_TOUR_STATE:?set SLUICE_TOUR_STATE to the directory of e2e/k8s/control-plane.sh up DIR}"
work="$(mktemp -d)"
load_pid=""
# A load left running would write into the next cluster that takes the
# same names (and auto-create its topic there).
trap '[[ -n "$load_pid" ]] && kill "$load_pid" 2>/dev/null; rm -rf "$work"' EXIT
checks=0

step() { printf '\n--> tour: %s\n' "$*"; }
ok() { checks=$((checks + 1)); printf '    ok: %s\n' "$*"; }
fail() {
  printf '    FAILED: %s\n' "$*" >&2
  "$kubectl" get kc,kt,sts,pods,pvc,nodes -o wide >&2 || true
  "$kubectl" get pods -o 'jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.conditions}{"\n"}{end}' >&2 || true
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
# ready_brokers_are N [CLUSTER]
ready_brokers_are() { [[ "$(jp "kc/${2:-demo}" '{.status.readyReplicas}')" == "$1" ]] &&
  [[ "$(jp "kc/${2:-demo}" '{.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }
# voters_are CLUSTER "IDS": status.quorum lists these voters, and a controller.
voters_are() { [[ "$(jp "kc/$1" '{.status.quorum.voters[*].id}')" == "$2" ]] &&
  [[ -n "$(jp "kc/$1" '{.status.quorum.controller}')" ]]; }

step "helm install the operator (it runs as a pod, with the chart's ServiceAccount and RBAC)"
"$helm" install sluice-operator charts/sluice-operator --namespace sluice-system --create-namespace \
  --wait --timeout 180s >"$work/helm.txt" || fail "helm install: $(cat "$work/helm.txt")"
grep -q "STATUS: deployed" "$work/helm.txt" || fail "helm install did not deploy: $(cat "$work/helm.txt")"
ok "helm install: STATUS: deployed"
"$kubectl" get crd kafkaclusters.sluice.dev topics.sluice.dev kafkausers.sluice.dev >/dev/null || fail "the chart installed no CRDs"
ok "the chart installed the CRDs"

step "kubectl explain kc.spec"
"$kubectl" wait --for condition=Established crd/kafkaclusters.sluice.dev crd/topics.sluice.dev crd/kafkausers.sluice.dev --timeout=60s >/dev/null
# The API server publishes a new CRD's OpenAPI schema a few seconds after it is established.
until_ok 60 "kubectl explain kc.spec answers" bash -c "'$kubectl' explain kc.spec >'$work/explain.txt'"
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
bad_listeners() {
  printf 'apiVersion: sluice.dev/v1alpha1\nkind: KafkaCluster\nmetadata: {name: bad}\nspec: {replicas: 1, storage: {size: 1Gi}, listeners: [%s]}\n' "$1" >"$work/bad-listeners.yaml"
}
bad_listeners '{name: metrics, port: 9000}'
refused "$work/bad-listeners.yaml" "name the operator's own ports"
bad_listeners '{name: certs, port: 9000, authentication: tls}'
refused "$work/bad-listeners.yaml" "authentication tls needs tls: true"
bad_listeners '{name: a, port: 9000}, {name: b, port: 9000}'
refused "$work/bad-listeners.yaml" "listener ports must differ"

step "a one-broker KafkaCluster is a one-voter quorum; scaled to 3, its voters follow"
sed 's/^  replicas: 3/  replicas: 1/; s/^  name: demo/  name: solo/; s/"3"$/"1"/; s/min.insync.replicas: "2"/min.insync.replicas: "1"/' \
  examples/kafkacluster.yaml >"$work/solo.yaml"
"$kubectl" apply -f "$work/solo.yaml" >/dev/null
until_ok 240 "KafkaCluster solo Ready with 1 broker" ready_brokers_are 1 solo
until_ok 60 "status.quorum of solo: voter 0 alone, and a controller" voters_are solo 0
"$kubectl" scale kc solo --replicas=3 >/dev/null
until_ok 300 "solo scaled to 3 ready brokers" ready_brokers_are 3 solo
until_ok 180 "brokers 1 and 2 became voters once they had caught up: voters 0 1 2" voters_are solo "0 1 2"
# (Events of one reason on one object are aggregated into one series.)
"$kubectl" get events --field-selector involvedObject.name=solo,reason=QuorumVotersChanged \
  -o 'jsonpath={range .items[*]}{.message}{"\n"}{end}' | grep -q "a metadata quorum voter" ||
  fail "no QuorumVotersChanged event tells of the new voters"
ok "a QuorumVotersChanged event tells of the new voters"
echo "    quorum: $(jp kc/solo '{.status.quorum}')"
"$kubectl" delete kc solo --timeout=120s >/dev/null || fail "deleting KafkaCluster solo"
solo_gone() { [[ -z "$("$kubectl" get pods -l app.kubernetes.io/instance=solo -o name)" ]]; }
until_ok 120 "KafkaCluster solo deleted, its pods gone" solo_gone

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
# every acknowledged record back at the end. load_target: where it writes
# (bootstrap, topic, then -X client settings).
load_target=("$bootstrap" orders)
start_load() {
  rm -f "$work/stop"
  "$python" e2e/k8s/acked_load.py produce "${load_target[0]}" "${load_target[1]}" "$work/acked.txt" "$work/stop" \
    "${load_target[@]:2}" "$@" >"$work/load.txt" 2>&1 &
  load_pid=$!
  until_ok 60 "the acks=all load is acknowledged" test -s "$work/acked.txt"
}
stop_load() {
  touch "$work/stop"
  wait "$load_pid" || { load_pid=""; fail "the load: $(cat "$work/load.txt")"; }
  load_pid=""
  ok "$(tail -n 1 "$work/load.txt")"
  # "$@": --known-duplicates where partitions move under the load: an
  # idempotent librdkafka producer can write a batch twice when leaders
  # change (librdkafka #4953: it bumps its epoch after the
  # OUT_OF_ORDER_SEQUENCE answers to the batches behind a failed one, and
  # resends them; Kafka brokers see the same). Reported, not failed.
  "$python" e2e/k8s/acked_load.py check "${load_target[0]}" "${load_target[1]}" "$work/acked.txt" \
    "${load_target[@]:2}" "$@" >"$work/check.txt" 2>&1 ||
    fail "$(cat "$work/check.txt")"
  grep -q "KNOWN DEFECT" "$work/check.txt" && echo "    $(grep "KNOWN DEFECT" "$work/check.txt")"
  grep -q "without an offset" "$work/check.txt" && echo "    $(grep "without an offset" "$work/check.txt")"
  ok "$(grep '^check: [0-9]' "$work/check.txt")"
}

step "kubectl scale kc demo --replicas=5, then back to 3, under an acks=all load"
start_load
"$kubectl" scale kc demo --replicas=5 >/dev/null
until_ok 300 "5 ready brokers" ready_brokers_are 5
until_ok 300 "partitions moved onto the new brokers (demo-3 and demo-4 lead or follow)" bash -c \
  "'$kcat' -b '$bootstrap' -L -t orders | grep -Eq 'replicas: .*\\b(3|4)\\b'"
"$kubectl" patch kc demo --type merge -p '{"spec":{"quorum":{"voters":5}}}' >/dev/null
until_ok 240 "spec.quorum.voters 5: brokers 3 and 4 vote too" voters_are demo "0 1 2 3 4"
# The scale-down waits for approval (spec.rebalance.requireApproval), so
# the operator can be killed with the plan written but not carried out.
"$kubectl" patch kc demo --type merge -p '{"spec":{"rebalance":{"requireApproval":true}}}' >/dev/null
# Back to 3 brokers and the default voters (the first three).
"$kubectl" patch kc demo --type merge -p '{"spec":{"replicas":3,"quorum":null}}' >/dev/null
awaiting() { [[ "$(jp kc/demo '{.status.plan.phase}')" == AwaitingApproval ]]; }
until_ok 240 "the scale-down plan is written and awaits approval" awaiting
voters_are demo "0 1 2" || fail "awaiting the drain, the voters are $(jp kc/demo '{.status.quorum.voters[*].id}')"
[[ "$(jp sts/demo '{.spec.replicas}')" == 5 ]] || fail "the StatefulSet shrank before the drain was approved"
ok "brokers 3 and 4 gave up their votes before draining (voters 0 1 2, 5 pods still)"
plan_id="$(jp kc/demo '{.status.plan.id}')"
operator_pod="$("$kubectl" -n sluice-system get pods -o name | head -n 1)"
"$kubectl" -n sluice-system delete "$operator_pod" --force --grace-period=0 >/dev/null 2>&1
ok "operator pod killed in the middle of the scale-down ($operator_pod, plan $plan_id)"
new_operator() {
  "$kubectl" -n sluice-system get pods --no-headers | grep -v "${operator_pod#pod/}" | grep -q ' 1/1 '
}
until_ok 120 "a new operator pod is Ready" new_operator
sleep 20 # past the old leader's lease: the new operator reconciles
awaiting || fail "after the operator restart the plan is $(jp kc/demo '{.status.plan}')"
[[ "$(jp kc/demo '{.status.plan.id}')" == "$plan_id" ]] || fail "the new operator made another plan"
ok "the new operator resumed the same plan ($plan_id), still awaiting approval"
"$kubectl" annotate kc demo "sluice.dev/approved-plan=$plan_id" --overwrite >/dev/null
until_ok 420 "back to 3 brokers, StatefulSet shrunk" bash -c \
  "[[ \$('$kubectl' get sts demo -o 'jsonpath={.spec.replicas}') == 3 ]] && [[ \$('$kubectl' get kc demo -o 'jsonpath={.status.readyReplicas}') == 3 ]]"
"$kubectl" patch kc demo --type merge -p '{"spec":{"rebalance":{"requireApproval":false}}}' >/dev/null
stop_load --known-duplicates
scaled_down="$("$kubectl" get events --field-selector reason=ScaledDown -o name | wc -l)"
[[ "$scaled_down" == 1 ]] || fail "the scale-down happened $scaled_down times (one ScaledDown event expected)"
ok "one ScaledDown event: the new operator resumed the plan, nothing was done twice"

step "kubectl delete pod demo-1 -> recreated by the StatefulSet controller, with its data"
old_uid="$(jp pod/demo-1 '{.metadata.uid}')"
"$kubectl" delete pod demo-1 --wait=false >/dev/null
until_ok 180 "demo-1 recreated and Ready" bash -c \
  "[[ \$('$kubectl' get pod demo-1 -o 'jsonpath={.metadata.uid}') != '$old_uid' ]] && [[ \$('$kubectl' get pod demo-1 -o 'jsonpath={.status.conditions[?(@.type==\"Ready\")].status}') == True ]]"
until_ok 120 "KafkaCluster Ready again" ready_brokers_are 3
"$python" e2e/k8s/acked_load.py check "$bootstrap" orders "$work/acked.txt" --known-duplicates >"$work/check.txt" 2>&1 ||
  fail "$(cat "$work/check.txt")"
ok "after the pod came back: $(grep '^check: [0-9]' "$work/check.txt")"

pod_uids() {
  "$kubectl" get pods -l app.kubernetes.io/instance=demo \
    -o 'jsonpath={range .items[*]}{.metadata.name}={.metadata.uid}{"\n"}{end}' | sort
}
isr_at_least_2() {
  "$kcat" -b "$bootstrap" -L -t orders 2>/dev/null | grep 'isrs:' >"$work/isr.txt" || return 1
  [[ -s "$work/isr.txt" ]] && ! grep -Eq 'isrs: [0-9]+$' "$work/isr.txt"
}
condition() { jp kc/demo "{.status.conditions[?(@.type==\"$1\")].$2}"; }

step "a config change rolls the brokers one at a time, never below min.insync.replicas, under load"
start_load
before="$(pod_uids)"
"$kubectl" patch kc demo --type merge -p '{"spec":{"config":{"log.retention.ms":"3600000"}}}' >/dev/null
end=$((SECONDS + 600))
max_down=0
below_min_isr=0
while :; do
  now="$(pod_uids)"
  if [[ -z "$(comm -12 <(echo "$before") <(echo "$now"))" ]] && ready_brokers_are 3; then
    break
  fi
  ((SECONDS < end)) || fail "the rolling restart did not finish in 600 s"
  up="$("$kubectl" get pods -l app.kubernetes.io/instance=demo --no-headers | grep -c ' 1/1 ' || true)"
  ((3 - up > max_down)) && max_down=$((3 - up))
  isr_at_least_2 || below_min_isr=$((below_min_isr + 1))
  sleep 1
done
roll_done() { [[ "$(condition RollingRestart reason)" == UpToDate ]] && ready_brokers_are 3; }
until_ok 120 "the RollingRestart condition is back to UpToDate" roll_done
ok "every broker pod was replaced (new uids)"
((max_down <= 1)) || fail "$max_down broker pods were down at once"
ok "never more than one broker pod down at a time"
((below_min_isr == 0)) || fail "a partition's ISR was below min.insync.replicas=2 in $below_min_isr samples"
ok "every partition kept an ISR of at least 2 (min.insync.replicas) in every sample"
stop_load

step "storage.size 10Gi -> 20Gi expands every volume in place; 5Gi is refused"
claim_sizes() {
  "$kubectl" get pvc data-demo-0 data-demo-1 data-demo-2 \
    -o 'jsonpath={range .items[*]}{.status.capacity.storage}{" "}{end}'
}
before="$(pod_uids)"
"$kubectl" patch kc demo --type merge -p '{"spec":{"storage":{"size":"20Gi"}}}' >/dev/null
expanded() { [[ "$(claim_sizes)" == '20Gi 20Gi 20Gi ' ]]; }
until_ok 180 "every broker claim reports 20Gi" expanded
volumes_up_to_date() { [[ "$(condition VolumeExpansion reason)" == UpToDate ]]; }
until_ok 60 "VolumeExpansion condition UpToDate" volumes_up_to_date
[[ "$(jp sts/demo '{.spec.volumeClaimTemplates[0].spec.resources.requests.storage}')" == 20Gi ]] ||
  fail "the StatefulSet's claim template is not 20Gi"
ok "the StatefulSet's claim template asks for 20Gi"
[[ "$(pod_uids)" == "$before" ]] || fail "pods were recreated by a volume expansion"
ok "no broker pod was recreated"
until_ok 60 "KafkaCluster Ready after the expansion" ready_brokers_are 3
"$kubectl" patch kc demo --type merge -p '{"spec":{"storage":{"size":"5Gi"}}}' >/dev/null
shrink_refused() { condition VolumeExpansion message | grep -q 'a volume cannot shrink'; }
until_ok 60 "a smaller storage.size is refused, named in the status" shrink_refused
echo "    $(condition VolumeExpansion message)"
[[ "$(jp sts/demo '{.spec.volumeClaimTemplates[0].spec.resources.requests.storage}')" == 20Gi ]] ||
  fail "a refused shrink changed the StatefulSet"
ok "the StatefulSet still asks for 20Gi"
"$kubectl" patch kc demo --type merge -p '{"spec":{"storage":{"size":"20Gi"}}}' >/dev/null

step "a lost volume (claim and pod deleted) is rebuilt from the other replicas"
start_load
old_claim="$(jp pvc/data-demo-2 '{.metadata.uid}')"
# Broker 2 votes in the metadata quorum: its new log is a new voter.
old_dir="$(jp kc/demo '{.status.quorum.voters[?(@.id==2)].directoryId}')"
[[ -n "$old_dir" ]] || fail "status.quorum does not show voter 2"
"$kubectl" delete pvc data-demo-2 --wait=false >/dev/null
"$kubectl" delete pod demo-2 --wait=false >/dev/null
rebuilt() {
  [[ "$(jp pvc/data-demo-2 '{.metadata.uid}')" != "$old_claim" ]] &&
    [[ "$(jp pod/demo-2 '{.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}
until_ok 240 "demo-2 back on a new volume and Ready" rebuilt
broker_2_back() {
  [[ "$(jp kc/demo '{.status.brokers[?(@.id==2)].state}')" == Running ]] &&
    [[ "$(condition Degraded status)" == False ]]
}
until_ok 300 "broker 2 Running with its replicas copied back (Degraded False)" broker_2_back
new_voter() {
  local dir
  dir="$(jp kc/demo '{.status.quorum.voters[?(@.id==2)].directoryId}')"
  [[ -n "$dir" && "$dir" != "$old_dir" ]] &&
    [[ "$(jp kc/demo '{.status.quorum.voters[*].id}')" == "0 1 2" ]]
}
until_ok 120 "voter 2 votes again under its new directory id (status.quorum)" new_voter
"$kubectl" get events --field-selector involvedObject.name=demo \
  -o 'jsonpath={range .items[*]}{.reason}{" "}{end}' | grep -q Rebuil || fail "no event tells of the rebuild"
ok "events tell of the rebuild"
stop_load

step "a stopped node: the status names the broker"
# A broker's node, not the operator's: with the operator's own node
# stopped, its pod is evicted only after the unreachable toleration (300 s
# by default) and the status waits for the new operator pod.
operator_node="$("$kubectl" -n sluice-system get pods -o 'jsonpath={.items[0].spec.nodeName}')"
stopped=""
for id in 0 1 2; do
  n="$(jp "pod/demo-$id" '{.spec.nodeName}')"
  if [[ "$n" != "$operator_node" ]]; then
    stopped="$id"
    node="$n"
    break
  fi
done
[[ -n "$stopped" ]] || fail "every broker pod shares the operator's node $operator_node"
touch "$SLUICE_TOUR_STATE/kubelet/stopped/$node"
names_stopped_broker() {
  [[ "$(condition Ready status)" == False ]] &&
    condition Ready message | grep -q "demo-$stopped: Starting (its node $node stopped reporting"
}
until_ok 180 "KafkaCluster not Ready, naming demo-$stopped and its stopped node $node (the operator runs on $operator_node)" \
  names_stopped_broker
jp kc/demo "{.status.brokers[?(@.id==$stopped)].message}" | grep -q "kubectl describe node $node" ||
  fail "broker $stopped's status does not say what to do"
ok "broker $stopped's status says what a person can do"
echo "    Ready: $(condition Ready message)"
printf 'while:node-down\n' | "$kcat" -b "$bootstrap" -P -t orders -K: -X acks=all || fail "writing with a node down"
ok "acks=all writes go on with broker $stopped's node down"
rm -f "$SLUICE_TOUR_STATE/kubelet/stopped/$node"
until_ok 180 "node $node back: KafkaCluster Ready" ready_brokers_are 3

step "Topic objects: create, grow, reconfigure, a decrease refused, delete with both policies"
cat >"$work/topics.yaml" <<'YAML'
apiVersion: sluice.dev/v1alpha1
kind: Topic
metadata: {name: tour-keep}
spec: {clusterRef: demo, partitions: 2, replicationFactor: 3, deletionPolicy: Retain}
---
apiVersion: sluice.dev/v1alpha1
kind: Topic
metadata: {name: tour-drop}
spec: {clusterRef: demo, partitions: 2, replicationFactor: 2, deletionPolicy: Delete, config: {cleanup.policy: compact}}
YAML
"$kubectl" apply -f "$work/topics.yaml" >/dev/null
topics_ready() {
  [[ "$(jp kt/tour-keep '{.status.conditions[?(@.type=="Ready")].status}')" == True ]] &&
    [[ "$(jp kt/tour-drop '{.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}
partitions_are() { "$kcat" -b "$bootstrap" -L -t "$1" 2>/dev/null | grep -q "topic \"$1\" with $2 partitions"; }
until_ok 60 "tour-keep and tour-drop Ready" topics_ready
until_ok 30 "tour-keep is a real topic with 2 partitions" partitions_are tour-keep 2
"$kubectl" patch kt tour-keep --type merge -p '{"spec":{"partitions":4}}' >/dev/null
message_has() { jp "kt/$1" '{.status.conditions[?(@.type=="Ready")].message}' | grep -q "$2"; }
until_ok 60 "tour-keep grown to 4 partitions in Kafka" partitions_are tour-keep 4
keep_ready() { [[ "$(jp kt/tour-keep '{.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }
until_ok 30 "tour-keep Ready after the growth" keep_ready
retention_is() { [[ "$("$python" e2e/k8s/topic_config.py "$bootstrap" tour-keep retention.ms 2>/dev/null)" == "$1" ]]; }
"$kubectl" patch kt tour-keep --type merge -p '{"spec":{"config":{"retention.ms":"3600000"}}}' >/dev/null
until_ok 60 "a config set on the Topic reaches Kafka (retention.ms 3600000)" retention_is 3600000
status_retention() { [[ "$(jp kt/tour-keep '{.status.config.retention\.ms}')" == 3600000 ]]; }
until_ok 30 "kt tour-keep status.config shows retention.ms 3600000" status_retention
[[ "$("$python" e2e/k8s/topic_config.py "$bootstrap" tour-drop cleanup.policy)" == compact ]] ||
  fail "tour-drop was not created with cleanup.policy=compact"
ok "tour-drop has cleanup.policy=compact"
"$kubectl" patch kt tour-keep --type merge -p '{"spec":{"partitions":1}}' >/dev/null
until_ok 60 "a partition decrease is refused (Ready False: cannot shrink)" message_has tour-keep "cannot shrink"
echo "    $(jp kt/tour-keep '{.status.conditions[?(@.type=="Ready")].message}')"
partitions_are tour-keep 4 || fail "a refused decrease changed the topic"
ok "the topic keeps its 4 partitions"
"$kubectl" delete kt tour-keep tour-drop --timeout=60s >/dev/null || fail "deleting the Topic objects"
# All topics, not -L -t tour-drop: a Metadata request that names a topic
# auto-creates it (auto.create.topics.enable is on, as in Kafka).
dropped() {
  "$kcat" -b "$bootstrap" -L >"$work/all.txt" 2>&1 && ! grep -q 'topic "tour-drop" with' "$work/all.txt"
}
until_ok 30 "tour-drop (deletionPolicy: Delete) is deleted in Kafka" dropped
partitions_are tour-keep 4 || fail "tour-keep (deletionPolicy: Retain) was deleted in Kafka"
ok "tour-keep (deletionPolicy: Retain) is still in Kafka"

step "a secured KafkaCluster from Helm values (charts/sluice-cluster: the cluster of examples/kafkacluster-secure.yaml, the users of examples/kafkauser.yaml): TLS, SCRAM and client certificates, ACLs"
# scripts/check-k8s.sh checks that these values render exactly the examples.
"$helm" install secure charts/sluice-cluster -f charts/sluice-cluster/examples/secure.yaml >"$work/helm-secure.txt" ||
  fail "helm install secure: $(cat "$work/helm-secure.txt")"
ok "helm install secure charts/sluice-cluster: $(grep -m1 STATUS "$work/helm-secure.txt")"
until_ok 300 "KafkaCluster secure Ready with 2 brokers (the operator talks to them over mutual TLS)" ready_brokers_are 2 secure
"$kubectl" get secret secure-cluster-ca-cert -o 'jsonpath={.data.ca\.crt}' | base64 -d >"$work/ca.crt"
grep -q "BEGIN CERTIFICATE" "$work/ca.crt" || fail "Secret secure-cluster-ca-cert holds no ca.crt"
ok "clients find the cluster CA in Secret secure-cluster-ca-cert"
# A client certificate from the cluster CA, as an administrator makes one
# (KafkaUser resources will issue them from the clients CA).
"$kubectl" get secret secure-cluster-ca -o 'jsonpath={.data.ca\.key}' | base64 -d >"$work/ca.key"
issue() {
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" \
    -keyout "$work/$1.key" -out "$work/$1.csr" 2>/dev/null &&
    printf 'extendedKeyUsage=clientAuth\n' >"$work/ext.cnf" &&
    openssl x509 -req -in "$work/$1.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
      -days 1 -extfile "$work/ext.cnf" -out "$work/$1.crt" 2>/dev/null
}
issue tour-admin || fail "openssl could not issue a client certificate"
issue tour-nobody || fail "openssl could not issue a client certificate"
secure_bootstrap="$(jp kc/secure '{.status.bootstrapServers}')"
[[ "$secure_bootstrap" == secure-bootstrap.default.svc:9094 ]] ||
  fail "status.bootstrapServers of secure names the first listener: $secure_bootstrap"
mtls="${secure_bootstrap%:*}:9095"
as() {
  local who="$1"
  shift
  timeout 40 "$kcat" -b "$mtls" -X security.protocol=ssl -X "ssl.ca.location=$work/ca.crt" \
    -X "ssl.certificate.location=$work/$who.crt" -X "ssl.key.location=$work/$who.key" "$@"
}
as tour-admin -L >"$work/secure-meta.txt" 2>&1 || fail "kcat -L over mTLS: $(cat "$work/secure-meta.txt")"
{ grep -q " 2 brokers:" "$work/secure-meta.txt" && grep -q "secure-1.secure-brokers.default.svc:9095" "$work/secure-meta.txt"; } ||
  fail "kcat -L over mTLS: $(cat "$work/secure-meta.txt")"
ok "kcat -L over mTLS (ssl.endpoint.identification on): 2 brokers at their pod names on the mtls listener"
printf 'one\ntwo\n' | as tour-admin -P -t secured -X acks=all -X message.timeout.ms=20000 ||
  fail "a super user's acks=all produce over mTLS"
as tour-admin -C -t secured -o beginning -e -q >"$work/secured.txt" 2>&1
[[ "$(cat "$work/secured.txt")" == $'one\ntwo' ]] || fail "read back over mTLS: $(cat "$work/secured.txt")"
ok "User:CN=tour-admin (a super user) wrote with acks=all at min.insync.replicas 2 (the brokers replicate over mTLS, as super users) and read back"
if printf 'never\n' | as tour-nobody -P -t secured -X message.timeout.ms=8000 >"$work/denied.txt" 2>&1; then
  fail "a principal without ACLs wrote to topic secured"
fi
grep -qi "authoriz" "$work/denied.txt" || fail "refusal without an authorization error: $(cat "$work/denied.txt")"
ok "User:CN=tour-nobody, without an ACL, is refused: $(grep -i -m1 authoriz "$work/denied.txt")"
as tour-nobody -L >"$work/nobody-meta.txt" 2>&1 || true
if grep -q 'topic "secured"' "$work/nobody-meta.txt"; then
  fail "metadata shows topic secured to a principal that may not describe it"
fi
ok "and its metadata does not list the topic"
if timeout 30 "$kcat" -b "$mtls" -X security.protocol=ssl -X "ssl.ca.location=$work/ca.crt" -L -m 5 >"$work/nocert.txt" 2>&1; then
  fail "the mtls listener served a client without a certificate"
fi
ok "the mtls listener refuses a client without a certificate"
if timeout 30 "$kcat" -b "$secure_bootstrap" -X security.protocol=sasl_ssl -X "ssl.ca.location=$work/ca.crt" \
  -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username=nobody -X sasl.password=wrong -L -m 5 >"$work/scram.txt" 2>&1; then
  fail "the scram listener served an unknown user"
fi
grep -qi "authentication" "$work/scram.txt" || fail "SCRAM refusal: $(cat "$work/scram.txt")"
ok "the scram listener refuses an unknown SCRAM user: $(grep -i -m1 authentication "$work/scram.txt")"
if timeout 30 "$kcat" -b "$mtls" -X security.protocol=ssl -L -m 5 >"$work/untrusted.txt" 2>&1; then
  fail "a client that does not trust the cluster CA connected"
fi
ok "a client without the cluster CA does not trust the brokers"

step "the cluster CA renewed (sluice.dev/force-renew) under an acks=all load over mTLS: no failed write, no client losing trust, no restart"
# What a broker serves on a listener: its certificate's fingerprint.
served() {
  openssl s_client -connect "$1" -servername "${1%:*}" -CAfile "$work/ca.crt" \
    -cert "$work/tour-admin.crt" -key "$work/tour-admin.key" </dev/null 2>/dev/null |
    openssl x509 -noout -fingerprint -sha256 2>/dev/null
}
endpoints=()
for b in 0 1; do
  for port in 9094 9095; do endpoints+=("secure-$b.secure-brokers.default.svc:$port"); done
done
declare -A before_renewal
for e in "${endpoints[@]}"; do
  before_renewal[$e]="$(served "$e")"
  [[ -n "${before_renewal[$e]}" ]] || fail "openssl s_client got no certificate from $e"
done
pods_before="$("$kubectl" get pods -l app.kubernetes.io/instance=secure -o 'jsonpath={range .items[*]}{.metadata.uid}:{.status.containerStatuses[0].restartCount} {end}')"
cp "$work/ca.crt" "$work/old-ca.crt"
# Every producer of the load trusts only the CA it was given before the
# renewal, and a new one (new connections, new handshakes) starts every 3 s.
load_target=("$mtls" secured -X security.protocol=ssl -X "ssl.ca.location=$work/old-ca.crt"
  -X "ssl.certificate.location=$work/tour-admin.crt" -X "ssl.key.location=$work/tour-admin.key")
start_load --fresh-every 3
"$kubectl" annotate secret secure-cluster-ca sluice.dev/force-renew=true >/dev/null
new_ca() {
  "$kubectl" get secret secure-cluster-ca-cert -o 'jsonpath={.data.ca\.crt}' | base64 -d >"$work/new-ca.crt" &&
    grep -q "BEGIN CERTIFICATE" "$work/new-ca.crt" && ! cmp -s "$work/new-ca.crt" "$work/old-ca.crt" &&
    [[ -z "$(jp secret/secure-cluster-ca '{.metadata.annotations.sluice\.dev/force-renew}')" ]]
}
until_ok 60 "the CA is renewed: a new certificate in secure-cluster-ca-cert, the annotation taken off" new_ca
[[ "$(openssl x509 -in "$work/new-ca.crt" -noout -pubkey)" == "$(openssl x509 -in "$work/old-ca.crt" -noout -pubkey)" ]] ||
  fail "the renewed CA has another key"
ok "the renewed CA keeps its key (what either signs, both verify): valid until $(openssl x509 -in "$work/new-ca.crt" -noout -enddate | cut -d= -f2)"
all_reissued() {
  local e f
  for e in "${endpoints[@]}"; do
    f="$(served "$e")"
    [[ -n "$f" && "$f" != "${before_renewal[$e]}" ]] || return 1
  done
}
until_ok 120 "every broker serves a new certificate on both client listeners (re-issued, read from its refreshed Secret volume)" all_reissued
sleep 6
stop_load
grep -q " 0 failed, 0 unanswered" "$work/load.txt" || fail "writes failed across the renewal: $(cat "$work/load.txt")"
pods_after="$("$kubectl" get pods -l app.kubernetes.io/instance=secure -o 'jsonpath={range .items[*]}{.metadata.uid}:{.status.containerStatuses[0].restartCount} {end}')"
[[ "$pods_after" == "$pods_before" ]] || fail "broker pods restarted for the renewal: $pods_before -> $pods_after"
ok "no broker restarted: the brokers took the new certificates in place"
cp "$work/new-ca.crt" "$work/ca.crt"
as tour-admin -L >"$work/new-ca-meta.txt" 2>&1 || fail "a client of the renewed CA: $(cat "$work/new-ca-meta.txt")"
ok "a client given the renewed CA connects as well"
step "a KafkaUser: its SCRAM password in a Secret, its ACLs enforced, changed, and removed with it"
user_ready() { [[ "$(jp ku/app '{.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }
until_ok 60 "KafkaUser app Ready" user_ready
"$kubectl" get ku app | tee "$work/ku.txt"
grep -Eq '^app +secure +scram-sha-512 +True ' "$work/ku.txt" || fail "kubectl get ku: $(cat "$work/ku.txt")"
ok "kubectl get ku shows cluster secure, scram-sha-512, Ready True"
password="$("$kubectl" get secret app -o 'jsonpath={.data.password}' | base64 -d)"
[[ ${#password} -ge 24 ]] || fail "Secret app holds no generated password"
ok "Secret app holds the generated password (and username, sasl.jaas.config)"
app() {
  timeout 40 "$kcat" -b "$secure_bootstrap" -X security.protocol=sasl_ssl -X "ssl.ca.location=$work/ca.crt" \
    -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username=app -X "sasl.password=$1" "${@:2}"
}
printf 'a\nb\n' | app "$password" -P -t app-events -X acks=all -X message.timeout.ms=20000 ||
  fail "user app writing to app-events (its ACLs allow it)"
app "$password" -C -t app-events -o beginning -e -q >"$work/app.txt" 2>&1
[[ "$(cat "$work/app.txt")" == $'a\nb' ]] || fail "user app reading app-events back: $(cat "$work/app.txt")"
ok "user app (SCRAM-SHA-512 over TLS) wrote app-events with acks=all and read it back"
if printf 'x\n' | app "$password" -P -t secured -X message.timeout.ms=8000 >"$work/app-denied.txt" 2>&1; then
  fail "user app wrote to topic secured, which no ACL of its allows"
fi
grep -qi "authoriz" "$work/app-denied.txt" || fail "refusal without an authorization error: $(cat "$work/app-denied.txt")"
ok "user app is refused topic secured: $(grep -i -m1 authoriz "$work/app-denied.txt")"
acls() { "$python" e2e/k8s/acls_of.py "$mtls" "$work/ca.crt" "$work/tour-admin.crt" "$work/tour-admin.key" User:app; }
[[ "$(acls | wc -l)" == 5 ]] || fail "ACLs of User:app: $(acls)"
ok "the cluster holds its 5 ACLs (kafka-acls' view): $(acls | tr '\n' ';')"
"$kubectl" patch ku app --type merge -p \
  '{"spec":{"authorization":{"acls":[{"resource":{"type":"topic","name":"app-","patternType":"prefix"},"operations":["Read","Describe"]}]}}}' >/dev/null
two_acls() { [[ "$(acls | wc -l)" == 2 ]]; }
until_ok 60 "ACLs taken from the KafkaUser are taken from the cluster (2 ACLs left)" two_acls
if printf 'c\n' | app "$password" -P -t app-events -X message.timeout.ms=8000 >"$work/app-ro.txt" 2>&1; then
  fail "user app still writes after its Write ACL was removed"
fi
ok "and user app can no longer write app-events"
"$kubectl" delete ku app --timeout=60s >/dev/null || fail "deleting KafkaUser app"
no_acls() { [[ -z "$(acls)" ]]; }
until_ok 60 "KafkaUser app deleted: its ACLs are gone from the cluster" no_acls
if app "$password" -L -m 5 >"$work/app-gone.txt" 2>&1; then
  fail "user app still logs in after its KafkaUser was deleted"
fi
grep -qi "authentication" "$work/app-gone.txt" || fail "login after deletion: $(cat "$work/app-gone.txt")"
ok "and its password no longer logs in"
secret_gone() { [[ -z "$("$kubectl" get secret app -o name --ignore-not-found)" ]]; }
until_ok 60 "its Secret went with it" secret_gone

step "a KafkaUser with a client certificate (authentication: tls): its Secret is all a client needs"
tls_user_ready() { [[ "$(jp ku/app-tls '{.status.conditions[?(@.type=="Ready")].status}')" == True ]]; }
until_ok 60 "KafkaUser app-tls Ready" tls_user_ready
"$kubectl" get ku app-tls | tee "$work/ku-tls.txt"
grep -Eq '^app-tls +secure +tls +True ' "$work/ku-tls.txt" || fail "kubectl get ku: $(cat "$work/ku-tls.txt")"
for f in user.crt user.key ca.crt; do
  "$kubectl" get secret app-tls -o "jsonpath={.data.${f//./\\.}}" | base64 -d >"$work/app-tls-$f"
done
subject="$(openssl x509 -in "$work/app-tls-user.crt" -noout -subject)"
issuer="$(openssl x509 -in "$work/app-tls-user.crt" -noout -issuer)"
[[ "$subject" == "subject=CN = app-tls" && "$issuer" == *"clients CA default/secure"* ]] ||
  fail "the user's certificate: $subject, $issuer"
not_after="$(jp ku/app-tls '{.status.certificateNotAfter}')"
[[ "$(date -d "$not_after" +%s 2>/dev/null || echo 0)" -gt "$(date -d '+364 days' +%s)" ]] ||
  fail "status.certificateNotAfter of app-tls: '$not_after', not a year from now"
ok "Secret app-tls: a certificate for CN=app-tls from the clients CA (status.certificateNotAfter $not_after), its key, and the cluster CA"
tls_app() {
  timeout 40 "$kcat" -b "$mtls" -X security.protocol=ssl -X "ssl.ca.location=$work/app-tls-ca.crt" \
    -X "ssl.certificate.location=$work/app-tls-user.crt" -X "ssl.key.location=$work/app-tls-user.key" "$@"
}
printf 'c1\nc2\n' | tls_app -P -t app-tls-events -X acks=all -X message.timeout.ms=20000 ||
  fail "user app-tls writing app-tls-events (its ACLs allow it)"
tls_app -C -t app-tls-events -o beginning -e -q >"$work/app-tls.txt" 2>&1
[[ "$(cat "$work/app-tls.txt")" == $'c1\nc2' ]] || fail "user app-tls reading back: $(cat "$work/app-tls.txt")"
ok "User:CN=app-tls wrote app-tls-events with acks=all over mTLS and read it back, with only its Secret's files"
if printf 'x\n' | tls_app -P -t secured -X message.timeout.ms=8000 >"$work/app-tls-denied.txt" 2>&1; then
  fail "user app-tls wrote to topic secured, which no ACL of its allows"
fi
grep -qi "authoriz" "$work/app-tls-denied.txt" || fail "refusal without an authorization error: $(cat "$work/app-tls-denied.txt")"
ok "user app-tls is refused topic secured: $(grep -i -m1 authoriz "$work/app-tls-denied.txt")"
# The quorum port takes the brokers (cluster CA) and no client: a user's
# certificate of the clients CA is refused there, an administrator's of
# the cluster CA answered.
quorum_port="secure-0.secure-brokers.default.svc:9093"
if "$python" e2e/k8s/quorum_probe.py "$quorum_port" "$work/ca.crt" "$work/app-tls-user.crt" "$work/app-tls-user.key" >"$work/probe.txt" 2>&1; then
  fail "the quorum port answered user app-tls"
fi
"$python" e2e/k8s/quorum_probe.py "$quorum_port" "$work/ca.crt" "$work/tour-admin.crt" "$work/tour-admin.key" >"$work/probe-admin.txt" 2>&1 ||
  fail "the quorum port refused a certificate of the cluster CA: $(cat "$work/probe-admin.txt")"
ok "the quorum port (mutual TLS) refuses user app-tls's certificate ($(cat "$work/probe.txt")) and answers one of the cluster CA"
"$kubectl" delete ku app-tls --timeout=60s >/dev/null || fail "deleting KafkaUser app-tls"
tls_acls() { "$python" e2e/k8s/acls_of.py "$mtls" "$work/ca.crt" "$work/tour-admin.crt" "$work/tour-admin.key" User:CN=app-tls; }
no_tls_acls() { [[ -z "$(tls_acls)" ]]; }
until_ok 60 "KafkaUser app-tls deleted: the ACLs of User:CN=app-tls are gone" no_tls_acls
if printf 'x\n' | tls_app -P -t app-tls-events -X message.timeout.ms=8000 >"$work/app-tls-gone.txt" 2>&1; then
  fail "the certificate of a deleted KafkaUser still writes"
fi
grep -qi "authoriz" "$work/app-tls-gone.txt" || fail "after deletion: $(cat "$work/app-tls-gone.txt")"
ok "and its certificate, still valid, may do nothing: $(grep -i -m1 authoriz "$work/app-tls-gone.txt")"

"$helm" uninstall secure --wait --timeout 120s >"$work/helm-secure.txt" || fail "helm uninstall secure: $(cat "$work/helm-secure.txt")"
kc_gone() { [[ -z "$("$kubectl" get kc secure -o name --ignore-not-found)" ]]; }
until_ok 120 "helm uninstall secure: KafkaCluster secure deleted" kc_gone
secrets_gone() { [[ -z "$("$kubectl" get secret secure-cluster-ca secure-cluster-ca-cert secure-clients-ca secure-clients-ca-cert secure-broker-certs -o name --ignore-not-found)" ]]; }
until_ok 120 "KafkaCluster secure deleted, its CA and certificate Secrets with it" secrets_gone

step "kubectl get kc,kt"
"$kubectl" get kc,kt

step "helm upgrade with a changed CRD upgrades it; helm uninstall leaves the CRDs and the clusters"
cp -r charts/sluice-operator "$work/chart"
sed -i 's/^version: .*/version: 0.1.1-tour/' "$work/chart/Chart.yaml"
# A new printer column in the Topic CRD, as a later release might add.
sed -i 's/^  - additionalPrinterColumns:$/  - additionalPrinterColumns:\n    - jsonPath: .spec.deletionPolicy\n      name: Policy\n      type: string/' \
  "$work/chart/crd-files/topics.sluice.dev.yaml"
"$helm" upgrade sluice-operator "$work/chart" --namespace sluice-system --wait --timeout 180s >"$work/helm.txt" ||
  fail "helm upgrade: $(cat "$work/helm.txt")"
ok "helm upgrade: $(grep STATUS "$work/helm.txt")"
[[ "$(jp crd/topics.sluice.dev '{.spec.versions[0].additionalPrinterColumns[0].name}')" == Policy ]] ||
  fail "helm upgrade left the old Topic CRD"
"$kubectl" get kt | tee "$work/get.txt"
grep -Eq '^orders +Retain +demo ' "$work/get.txt" || fail "kubectl get kt has no POLICY column: $(cat "$work/get.txt")"
ok "the upgraded CRD is served: kubectl get kt shows POLICY"
"$helm" uninstall sluice-operator --namespace sluice-system --wait --timeout 120s >"$work/helm.txt" ||
  fail "helm uninstall: $(cat "$work/helm.txt")"
# (The namespace keeps its own `default` ServiceAccount.)
gone() {
  local left
  left="$("$kubectl" -n sluice-system get deploy/sluice-operator sa/sluice-operator \
    svc/sluice-operator-metrics -o name --ignore-not-found 2>&1)"
  [[ -z "$left" ]]
}
until_ok 60 "helm uninstall removed the operator's Deployment, ServiceAccount and Service" gone
"$kubectl" get crd kafkaclusters.sluice.dev topics.sluice.dev >/dev/null || fail "helm uninstall deleted the CRDs"
ok "the CRDs are kept (helm.sh/resource-policy: keep)"
[[ "$(jp kc/demo '{.metadata.name}')" == demo ]] || fail "the KafkaCluster went with the chart"
"$kcat" -b "$bootstrap" -C -t orders -o beginning -e -q -c 1 >/dev/null || fail "the brokers stopped with the operator"
ok "KafkaCluster demo and its brokers keep running without the operator"

echo
echo "tour: $checks checks passed"
