#!/usr/bin/env bash
# End-to-end on kind: create a cluster, build and load the broker and
# operator images, install the operator with Helm, apply a KafkaCluster and
# a Topic, produce and consume with kcat, delete a broker pod and check it
# comes back with every record, scale 3 -> 5 -> 3 while producing.
#
# Needs: docker, kind, kubectl, helm (scripts/k8s-tools.sh provides the
# last two). Usage: e2e/kind/run.sh [--keep]
#   --keep                     leave the kind cluster running afterwards
#   SLUICE_KIND_CLUSTER=name   kind cluster name (default sluice-e2e)
#   SLUICE_KIND_BROKERS=n      scale the KafkaCluster to n brokers
#   KCAT_IMAGE=image           kcat image (default edenhill/kcat:1.7.1)
set -euo pipefail
cd "$(dirname "$0")/../.."

keep=false
[[ "${1:-}" == "--keep" ]] && keep=true
name="${SLUICE_KIND_CLUSTER:-sluice-e2e}"
brokers="${SLUICE_KIND_BROKERS:-3}"
kcat_image="${KCAT_IMAGE:-edenhill/kcat:1.7.1}"
ns=kafka
records=1000

step() { printf '\n==> %s\n' "$*"; }
die() { echo "FAILED: $*" >&2; exit 1; }

for tool in docker kind; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done
if ! command -v helm >/dev/null || ! command -v kubectl >/dev/null; then
  PATH="$(scripts/k8s-tools.sh):$PATH"
fi

cleanup() {
  local rc=$?
  if ((rc != 0)); then
    echo "--- diagnostics"
    kubectl get kc,kt,sts,pods -A -o wide || true
    kubectl -n "$ns" get kc demo -o yaml || true
    kubectl -n sluice-system logs deploy/sluice-operator --tail=100 || true
  fi
  if [[ "$keep" == false ]]; then
    kind delete cluster --name "$name" || true
  fi
  exit "$rc"
}
trap cleanup EXIT

step "kind cluster $name"
if ! kind get clusters | grep -qx "$name"; then
  kind create cluster --name "$name" --config e2e/kind/kind-config.yaml --wait 120s
fi
kubectl config use-context "kind-$name"

step "build and load images"
docker build -f docker/broker.Dockerfile -t sluice/broker:dev .
docker build -f docker/operator.Dockerfile -t sluice/operator:dev .
kind load docker-image --name "$name" sluice/broker:dev sluice/operator:dev

step "helm install the operator"
helm upgrade --install sluice-operator charts/sluice-operator \
  --namespace sluice-system --create-namespace \
  --set image.tag=dev --set image.pullPolicy=Never \
  --set logging.format=text --wait --timeout 180s
kubectl -n sluice-system rollout status deploy/sluice-operator --timeout=120s

step "apply the KafkaCluster and Topic"
kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$ns" apply -f e2e/kind/cluster.yaml
if ((brokers != 3)); then
  kubectl -n "$ns" scale kc demo --replicas="$brokers"
fi
kubectl -n "$ns" wait kc/demo --for=condition=Ready --timeout=300s
kubectl -n "$ns" get sts demo -o jsonpath='{.spec.replicas}' | grep -qx "$brokers" \
  || die "StatefulSet does not have $brokers replicas"
kubectl -n "$ns" wait kt/orders --for=condition=Ready --timeout=120s
kubectl -n "$ns" get kc,kt
bootstrap="$(kubectl -n "$ns" get kc demo -o jsonpath='{.status.bootstrapServers}')"
[[ -n "$bootstrap" ]] || die "status.bootstrapServers is empty"

# Runs kcat in a pod of the cluster's namespace; stdin goes to kcat.
kcat() {
  kubectl -n "$ns" run "kcat-$RANDOM" --rm -i --restart=Never --quiet \
    --image="$kcat_image" --command -- kcat -b "$bootstrap" "$@"
}

count_records() {
  kcat -C -t orders -o beginning -e -q -f '%k %s\n' | grep -c '^key-' || true
}

step "produce $records records, consume them"
seq 1 "$records" | sed 's/.*/key-&:value-&/' | kcat -P -t orders -K: -X acks=all
got="$(count_records)"
((got == records)) || die "consumed $got of $records records"

step "delete broker pod demo-0; it must come back with the data"
uid="$(kubectl -n "$ns" get pod demo-0 -o jsonpath='{.metadata.uid}')"
kubectl -n "$ns" delete pod demo-0 --wait=true
for _ in $(seq 1 60); do
  new="$(kubectl -n "$ns" get pod demo-0 -o jsonpath='{.metadata.uid}' 2>/dev/null || true)"
  [[ -n "$new" && "$new" != "$uid" ]] && break
  sleep 2
done
[[ "$new" != "$uid" ]] || die "pod demo-0 was not recreated"
kubectl -n "$ns" wait pod/demo-0 --for=condition=Ready --timeout=180s
kubectl -n "$ns" wait kc/demo --for=condition=Ready --timeout=180s
got="$(count_records)"
((got == records)) || die "after the pod came back: consumed $got of $records records"

# Waits until the KafkaCluster's plan is balanced for $1 brokers and the
# StatefulSet has $1 pods.
wait_balanced() {
  local want="$1" got
  for _ in $(seq 1 150); do
    got="$(kubectl -n "$ns" get kc demo -o jsonpath='{.status.balancedReplicas}/{.status.appliedReplicas}/{.status.plan.phase}' 2>/dev/null || true)"
    [[ "$got" == "$want/$want/Balanced" ]] && return 0
    sleep 2
  done
  kubectl -n "$ns" get kc demo -o jsonpath='{.status.plan}{"\n"}' || true
  die "not balanced for $want brokers (balanced/applied/phase: $got)"
}

brokers_now="$(kubectl -n "$ns" get kc demo -o jsonpath='{.spec.replicas}')"
if ((brokers_now == 3)); then
  step "scale 3 -> 5 while producing; partitions move onto the new brokers"
  seq 1 "$records" | sed 's/.*/key-&:more-&/' | kcat -P -t orders -K: -X acks=all &
  producer=$!
  kubectl -n "$ns" scale kc demo --replicas=5
  wait "$producer" || die "producing during the scale-up failed"
  wait_balanced 5
  kubectl -n "$ns" get kc demo -o jsonpath='{.status.conditions[?(@.type=="Rebalancing")].message}{"\n"}'
  got="$(count_records)"
  ((got == 2 * records)) || die "after scaling to 5: consumed $got of $((2 * records)) records"

  step "scale 5 -> 3; the leaving brokers are drained before their pods go"
  kubectl -n "$ns" scale kc demo --replicas=3
  wait_balanced 3
  kubectl -n "$ns" get sts demo -o jsonpath='{.spec.replicas}' | grep -qx 3 \
    || die "the StatefulSet did not shrink to 3"
  got="$(count_records)"
  ((got == 2 * records)) || die "after scaling back to 3: consumed $got of $((2 * records)) records"
  records=$((2 * records))
fi

step "delete the Topic (deletionPolicy: Delete)"
kubectl -n "$ns" delete kt orders --wait=true --timeout=60s
if kcat -L -t orders 2>/dev/null | grep -Eq 'topic "orders" with [1-9][0-9]* partitions'; then
  die "topic orders still exists after its Topic object was deleted"
fi

echo
echo "kind e2e passed: $records records survived a broker pod deletion and scaling 3 -> 5 -> 3"
