#!/usr/bin/env bash
# A real Kubernetes control plane on this machine, for the tier that runs the
# operator, the chart and the README tour against it:
#   etcd, kube-apiserver (TLS, RBAC, service-account signing, the default
#   admission plugins), kube-controller-manager (per-controller service
#   accounts), kube-scheduler, and process-kubelet with three Nodes that run
#   pods as local processes (docs/decisions/0022-...).
#
#   e2e/k8s/control-plane.sh up DIR     start everything; DIR/kubeconfig is an admin kubeconfig
#   e2e/k8s/control-plane.sh down DIR   stop everything started by `up DIR`
#
# The binaries come from scripts/k8s-tools.sh (.tools/bin) and
# target/debug (sluice-broker, sluice-operator, process-kubelet): build the
# workspace first. Logs are in DIR/logs. Ports: SLUICE_K8S_PORT_BASE
# (default 26400): +0 etcd client, +1 etcd peer, +43 kube-apiserver.
# Pod addresses: 127.SLUICE_K8S_POD_NET.<node>.<n> (default 1); two control
# planes side by side need different ones.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"

usage() { echo "usage: $0 up|down DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
cmd="$1"
mkdir -p "$2"
dir="$(cd "$2" && pwd)"
base="${SLUICE_K8S_PORT_BASE:-26400}"
etcd_port=$((base + 0))
peer_port=$((base + 1))
api_port=$((base + 43))

stop_all() {
  # process-kubelet first: it stops its pods' processes.
  for name in process-kubelet kube-scheduler kube-controller-manager kube-apiserver etcd; do
    local pidfile="$dir/pids/$name"
    [[ -f "$pidfile" ]] || continue
    local pid
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
  done
}

if [[ "$cmd" == down ]]; then
  stop_all
  exit 0
fi
[[ "$cmd" == up ]] || usage

bin="$repo/.tools/bin"
target="${CARGO_TARGET_DIR:-$repo/target}/debug"
for b in "$bin/etcd" "$bin/kube-apiserver" "$bin/kube-controller-manager" "$bin/kube-scheduler" \
  "$target/process-kubelet" "$target/sluice-broker" "$target/sluice-operator"; do
  [[ -x "$b" ]] || { echo "control-plane: $b is missing (scripts/k8s-tools.sh; cargo build --workspace)" >&2; exit 1; }
done
for port in "$etcd_port" "$peer_port" "$api_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "control-plane: port $port is in use (set SLUICE_K8S_PORT_BASE)" >&2
    exit 1
  fi
done

mkdir -p "$dir/logs" "$dir/pids" "$dir/pki"
pki="$dir/pki"

# A cluster CA, the API server's serving certificate (127.0.0.1 and the
# in-cluster names), and the service-account signing key.
if [[ ! -f "$pki/apiserver.crt" ]]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=sluice-test-ca" \
    -keyout "$pki/ca.key" -out "$pki/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$pki/apiserver.key" -out "$pki/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n' >"$pki/san.ext"
  openssl x509 -req -in "$pki/apiserver.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 30 -extfile "$pki/san.ext" -out "$pki/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  token="$(openssl rand -hex 24)"
  echo "$token,sluice-admin,sluice-admin,system:masters" >"$pki/tokens.csv"
fi
token="$(cut -d, -f1 "$pki/tokens.csv")"

cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
current-context: sluice-test
clusters:
- name: sluice-test
  cluster:
    server: https://127.0.0.1:$api_port
    certificate-authority: $pki/ca.crt
contexts:
- name: sluice-test
  context:
    cluster: sluice-test
    user: sluice-admin
    namespace: default
users:
- name: sluice-admin
  user:
    token: $token
EOF

start() {
  local name="$1"
  shift
  setsid "$@" >>"$dir/logs/$name.log" 2>&1 </dev/null &
  echo $! >"$dir/pids/$name"
}

wait_for() {
  local what="$1" secs="$2"
  shift 2
  for _ in $(seq 1 $((secs * 4))); do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.25
  done
  echo "control-plane: $what not up after ${secs}s; logs in $dir/logs" >&2
  tail -n 20 "$dir/logs/"*.log >&2 || true
  stop_all
  exit 1
}

start etcd "$bin/etcd" --name sluice-test --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
  --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
  --initial-cluster "sluice-test=http://127.0.0.1:$peer_port" --listen-metrics-urls "" \
  --quota-backend-bytes 2147483648
wait_for etcd 30 bash -c "exec 3<>/dev/tcp/127.0.0.1/$etcd_port"

start kube-apiserver "$bin/kube-apiserver" \
  --etcd-servers "http://127.0.0.1:$etcd_port" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" --token-auth-file "$pki/tokens.csv" \
  --authorization-mode Node,RBAC \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range 10.96.0.0/16 \
  --allow-privileged=true \
  --profiling=false
wait_for kube-apiserver 120 "$bin/kubectl" --kubeconfig "$dir/kubeconfig" get --raw /readyz

start kube-controller-manager "$bin/kube-controller-manager" \
  --kubeconfig "$dir/kubeconfig" --authentication-kubeconfig "$dir/kubeconfig" \
  --authorization-kubeconfig "$dir/kubeconfig" \
  --use-service-account-credentials \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
  --leader-elect=false --secure-port 0 \
  --node-monitor-grace-period 20s
start kube-scheduler "$bin/kube-scheduler" \
  --kubeconfig "$dir/kubeconfig" --authentication-kubeconfig "$dir/kubeconfig" \
  --authorization-kubeconfig "$dir/kubeconfig" \
  --leader-elect=false --secure-port 0

start process-kubelet "$target/process-kubelet" \
  --kubeconfig "$dir/kubeconfig" --state-dir "$dir/kubelet" --nodes 3 \
  --apiserver "127.0.0.1:$api_port" --pod-net "${SLUICE_K8S_POD_NET:-1}" \
  --image "sluice/broker=$target/sluice-broker" \
  --image "sluice/operator=$target/sluice-operator"
wait_for "three Ready nodes" 60 bash -c \
  "[[ \$('$bin/kubectl' --kubeconfig '$dir/kubeconfig' get nodes --no-headers 2>/dev/null | grep -c ' Ready ') -ge 3 ]]"
# Pods need a service account: the controller-manager makes `default` in
# each namespace.
wait_for "the default service account" 60 "$bin/kubectl" --kubeconfig "$dir/kubeconfig" get serviceaccount default
echo "control plane up: KUBECONFIG=$dir/kubeconfig"
