#!/usr/bin/env bash
# Checks the Helm chart, the CRDs and the examples without a cluster:
# helm lint, helm template (what it renders, and that bad values are
# refused), strict schema validation of the examples against the CRDs and
# `kubectl create --dry-run=client` of everything (e2e/k8s/check_manifests.py).
# Needs .venv with e2e/k8s/requirements.txt (scripts/test.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

bin="$(scripts/k8s-tools.sh)"
helm="$bin/helm"
kubectl="$bin/kubectl"
chart=charts/sluice-operator
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

"$helm" version --short
"$kubectl" version --client

"$helm" lint --strict "$chart"

"$helm" template sluice "$chart" --namespace sluice-system --include-crds >"$out/default.yaml"
for kind in Deployment ServiceAccount ClusterRole ClusterRoleBinding Role RoleBinding Service CustomResourceDefinition; do
  grep -q "^kind: $kind\$" "$out/default.yaml" || { echo "helm template rendered no $kind" >&2; exit 1; }
done
for crd in kafkaclusters.sluice.dev topics.sluice.dev kafkausers.sluice.dev; do
  grep -q "name: $crd\$" "$out/default.yaml" || { echo "helm template rendered no CRD $crd" >&2; exit 1; }
done
grep -q -- "--leader-election=true" "$out/default.yaml"
# The CRDs are rendered (so helm upgrade upgrades them) and kept on uninstall.
[[ "$(grep -c "helm.sh/resource-policy: keep" "$out/default.yaml")" == 3 ]] ||
  { echo "helm template: the CRDs do not carry helm.sh/resource-policy: keep" >&2; exit 1; }

# Leader election off: no Lease Role; one namespace watched.
"$helm" template sluice "$chart" --namespace ops \
  --set leaderElection.enabled=false --set watchNamespace=kafka >"$out/single.yaml"
if grep -q "^kind: Role\$" "$out/single.yaml"; then
  echo "leader election disabled but a Lease Role rendered" >&2
  exit 1
fi
grep -q -- "--namespace=kafka" "$out/single.yaml"

# values.schema.json refuses bad values.
for bad in "logging.format=xml" "metrics.port=0" "image.pullPolicy=Sometimes" "replicaCount=-1" "nosuchvalue=1"; do
  if "$helm" template sluice "$chart" --set "$bad" >/dev/null 2>&1; then
    echo "helm template accepted the bad value $bad" >&2
    exit 1
  fi
done
echo "helm: chart lints, renders, refuses bad values"

# The cluster chart: its values render the secured example, bad ones are refused.
cluster_chart=charts/sluice-cluster
"$helm" lint --strict "$cluster_chart"
"$helm" template demo "$cluster_chart" >"$out/cluster-default.yaml"
grep -q "^kind: KafkaCluster\$" "$out/cluster-default.yaml"
"$helm" template secure "$cluster_chart" -f "$cluster_chart/examples/secure.yaml" >"$out/cluster-secure.yaml"
for bad in "listeners[0].name=plain,listeners[0].port=9092,listeners[0].authentication=ldap" \
  "users[0].name=app,users[0].authentication.type=kerberos" "replicas=0" "certificates.validityDays=1" "nosuchvalue=1"; do
  if "$helm" template demo "$cluster_chart" --set "$bad" >/dev/null 2>&1; then
    echo "helm template of sluice-cluster accepted the bad value $bad" >&2
    exit 1
  fi
done
echo "helm: sluice-cluster lints, renders, refuses bad values"

.venv/bin/python e2e/k8s/check_manifests.py "$kubectl" "$out/default.yaml" "$out/cluster-secure.yaml"
