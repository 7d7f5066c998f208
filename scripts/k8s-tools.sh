#!/usr/bin/env bash
# Builds the Kubernetes tools the tests use into .tools/bin (inside the
# repository, ignored by git) from the Go module proxy, at the versions
# pinned in e2e/k8s/controlplane/go.mod and e2e/k8s/helm/go.mod:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (Kubernetes),
#   etcd (the version Kubernetes pins), helm.
# Go's own build cache makes a second run take seconds. A binary is rebuilt
# when its pin changes (a stamp per binary records what built it).
# Prints the bin directory on stdout; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

bin="$PWD/.tools/bin"
mkdir -p "$bin"
command -v go >/dev/null || { echo "k8s-tools: go is needed to build the Kubernetes tools" >&2; exit 1; }
export GOFLAGS="${GOFLAGS:--buildvcs=false} -mod=readonly"

# build MODULE_DIR NAME PACKAGE LDFLAGS
build() {
  local dir="$1" name="$2" pkg="$3" ldflags="$4"
  local stamp="$bin/.$name.stamp" want
  want="$(cat "$dir/go.mod" "$dir/go.sum" | sha256sum | cut -c1-16) $ldflags"
  if [[ -x "$bin/$name" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  echo "k8s-tools: building $name ($pkg)" >&2
  local start=$SECONDS
  (cd "$dir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$bin/$name" "$pkg") >&2
  echo "k8s-tools: $name built in $((SECONDS - start)) s" >&2
  printf '%s' "$want" >"$stamp"
}

cp_dir=e2e/k8s/controlplane
k8s_version="$(cd "$cp_dir" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
k8s_minor="$(echo "$k8s_version" | cut -d. -f2)"
# What `kubectl version` and the API server's /version report (Kubernetes'
# own build sets these the same way; without them they say v0.0.0).
k8s_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  k8s_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$k8s_minor"
done
for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  build "$cp_dir" "$cmd" "k8s.io/kubernetes/cmd/$cmd" "$k8s_ldflags"
done
build "$cp_dir" etcd go.etcd.io/etcd/server/v3 ""

helm_dir=e2e/k8s/helm
helm_version="$(cd "$helm_dir" && go list -m -f '{{.Version}}' helm.sh/helm/v3)"
client_go="$(cd "$helm_dir" && go list -m -f '{{.Version}}' k8s.io/client-go)"
client_minor="$(echo "$client_go" | cut -d. -f2)"
# As helm's Makefile: the Kubernetes version `helm template` and `helm lint`
# assume is the one its client libraries come from.
helm_ldflags="-X helm.sh/helm/v3/internal/version.version=$helm_version"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$client_minor"
done
build "$helm_dir" helm helm.sh/helm/v3/cmd/helm "$helm_ldflags"

echo "$bin"
