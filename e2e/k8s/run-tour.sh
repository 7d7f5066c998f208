#!/usr/bin/env bash
# Starts the local control plane (e2e/k8s/control-plane.sh), runs the
# Kubernetes tour against it (e2e/k8s/tour.sh) and stops it again, leaving
# the logs in target/k8s-tour/logs when the tour fails.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
dir="${SLUICE_TOUR_DIR:-$repo/target/k8s-tour}"
"$repo/e2e/k8s/control-plane.sh" down "$dir" 2>/dev/null || true
rm -rf "$dir"
trap '"$repo/e2e/k8s/control-plane.sh" down "$dir"' EXIT
start=$SECONDS
"$repo/e2e/k8s/control-plane.sh" up "$dir"
echo "control plane up in $((SECONDS - start)) s"
if ! KUBECONFIG="$dir/kubeconfig" SLUICE_TOUR_STATE="$dir" "$repo/e2e/k8s/tour.sh"; then
  echo "tour failed; control-plane and pod logs are in $dir" >&2
  tail -n 30 "$dir/logs/process-kubelet.log" >&2 || true
  exit 1
fi
