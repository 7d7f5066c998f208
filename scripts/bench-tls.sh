#!/usr/bin/env bash
# The TLS rows of docs/performance.md: sluice-bench compare against one
# Sluice broker three ways, each started afresh per round, alternating:
# PLAINTEXT, SSL (TLS 1.3, rustls) and SASL_SSL (PLAIN over TLS), the same
# librdkafka clients with the settings each listener needs. A throwaway CA
# and broker certificate are made with openssl under DIR.
#
#   scripts/bench-tls.sh DIR [sluice-bench compare options...]
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:?usage: scripts/bench-tls.sh DIR [compare options]}"
shift
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=bench CA" \
  -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" \
  -keyout "$dir/broker.key" -out "$dir/broker.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$dir/san.ext"
openssl x509 -req -in "$dir/broker.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
  -CAcreateserial -days 2 -extfile "$dir/san.ext" -out "$dir/broker.crt" 2>/dev/null
# Sluice's key store: the private key and the chain in one PEM file.
cat "$dir/broker.key" "$dir/broker.crt" "$dir/ca.crt" >"$dir/broker.pem"
printf 'bench=bench-secret\n' >"$dir/users"

broker=target/release/sluice-broker
# INTERNAL: the inter-broker listener (plaintext, as a cluster's would be
# on a private network), the same on all three.
common="--log-dirs {dir} --metrics-listener 127.0.0.1:0 --inter-broker-listener-name INTERNAL"
map="--listener-security-protocol-map PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_SSL:SASL_SSL,INTERNAL:PLAINTEXT"
exec target/release/sluice-bench compare \
  --broker "plaintext=$broker $common $map --listeners PLAINTEXT://127.0.0.1:{port},INTERNAL://127.0.0.1:{port2}" \
  --broker "ssl=$broker $common $map --listeners SSL://127.0.0.1:{port},INTERNAL://127.0.0.1:{port2} --ssl-keystore-location $dir/broker.pem" \
  --broker "sasl_ssl=$broker $common $map --listeners SASL_SSL://127.0.0.1:{port},INTERNAL://127.0.0.1:{port2} --ssl-keystore-location $dir/broker.pem --sasl-enabled-mechanisms PLAIN --sasl-plain-users-file $dir/users" \
  --broker-client-setting ssl:security.protocol=ssl \
  --broker-client-setting "ssl:ssl.ca.location=$dir/ca.crt" \
  --broker-client-setting sasl_ssl:security.protocol=sasl_ssl \
  --broker-client-setting "sasl_ssl:ssl.ca.location=$dir/ca.crt" \
  --broker-client-setting sasl_ssl:sasl.mechanisms=PLAIN \
  --broker-client-setting sasl_ssl:sasl.username=bench \
  --broker-client-setting sasl_ssl:sasl.password=bench-secret \
  --dir "$dir/runs" "$@"
