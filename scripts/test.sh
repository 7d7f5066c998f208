#!/usr/bin/env bash
# Runs every Sluice test on a fresh Debian machine with a Rust toolchain.
# Installs what the tests need first: kcat and build tools with apt-get,
# the Python Kafka clients in a venv (.venv), the Kubernetes control plane
# and helm built from the Go module proxy (.tools/bin), crates with cargo.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "system packages"
missing=()
# rdkafka-sys builds librdkafka with cmake: it includes curl, OpenSSL and
# SASL headers (a fresh machine has none of them).
for pkg in kcat cmake pkg-config zlib1g-dev g++ shellcheck openssl \
  libcurl4-openssl-dev libssl-dev libsasl2-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
# Go (1.24 or newer, as the machine has it) builds the Kubernetes control
# plane, kubectl and helm: scripts/k8s-tools.sh.
# Java 17+ and Maven run Apache Kafka itself, the peer of the
# differential tests (e2e/kafka/kafka.sh); the machine's kind ships both.
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
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

step "kubernetes tools: kube-apiserver, controller-manager, scheduler, kubectl, etcd, helm (built with Go, pinned)"
k8s_bin="$(scripts/k8s-tools.sh)"
"$k8s_bin/kubectl" version --client
"$k8s_bin/helm" version --short

step "Apache Kafka, the peer (pinned in e2e/kafka/pom.xml, resolved with Maven)"
e2e/kafka/kafka.sh classpath >/dev/null
java -version 2>&1 | head -n 1

step "format and lints"
cargo fmt --all -- --check
cargo fmt --manifest-path fuzz/Cargo.toml -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo clippy --manifest-path fuzz/Cargo.toml --locked -- -D warnings
shellcheck scripts/*.sh .ci/run e2e/kind/*.sh e2e/k8s/*.sh e2e/kafka/*.sh
bash -n e2e/kind/run.sh
# Every decision record is in the index, with its status.
for record in docs/decisions/0*.md; do
  grep -q "($(basename "$record"))" docs/decisions/README.md ||
    { echo "docs/decisions/README.md does not list $record" >&2; exit 1; }
done

step "kubernetes manifests (helm lint/template, CRD schemas, kubectl dry run)"
scripts/check-k8s.sh

step "build"
cargo build --workspace --all-targets --locked

step "rust tests (unit, and e2e with kcat and rdkafka against real broker processes)"
cargo test --workspace --locked

step "fuzz the SASL token parsers and the SCRAM exchange (cargo-fuzz, nightly, 30 s a target)"
scripts/fuzz.sh

step "operator against a real kube-apiserver (the controllers in-process)"
SLUICE_TEST_KUBE_APISERVER="$k8s_bin/kube-apiserver" SLUICE_TEST_ETCD="$k8s_bin/etcd" \
  cargo test -p sluice-operator --test real_apiserver --locked -- --ignored

step "the Kubernetes tour on a real control plane (etcd, kube-apiserver, controller-manager, scheduler, process-kubelet)"
e2e/k8s/run-tour.sh

step "Go client tests (franz-go: kgo, kadm; sarama) against broker processes"
(
  cd e2e/go
  unformatted="$(gofmt -l .)"
  [[ -z "$unformatted" ]] || { echo "gofmt: $unformatted" >&2; exit 1; }
  go vet ./...
  go test -count=1 ./...
)

step "Java client and Kafka's own tools (kafka-clients, kafka-tools; JUnit 5 with Maven) against broker processes"
mvn -q -B -Dstyle.color=never -f e2e/java/pom.xml test \
  -Dsluice.broker="$PWD/target/debug/sluice-broker"

step "python client tests (confluent-kafka, kafka-python; some against Apache Kafka too)"
.venv/bin/pytest -q e2e/python
