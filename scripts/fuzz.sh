#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ (the SASL token parsers and the
# SCRAM exchange, crate sluice-sasl) for FUZZ_SECONDS each (30 unless
# set), with cargo-fuzz (pinned, installed under .tools/) on the nightly
# toolchain (installed with rustup if the machine lacks it). A crash
# fails the run and leaves its input in fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."

version=0.13.2
root=.tools/cargo-fuzz
seconds="${FUZZ_SECONDS:-30}"
if [[ "$("$root/bin/cargo-fuzz" --version 2>/dev/null)" != "cargo-fuzz $version" ]]; then
  cargo install cargo-fuzz --locked --version "$version" --root "$root" --quiet
fi
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
export PATH="$PWD/$root/bin:$PATH"
cd fuzz
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
for target in $(cargo +nightly fuzz list); do
  echo "fuzz: $target for ${seconds} s"
  # -rss_limit_mb bounds memory; the corpus grows in fuzz/corpus/ (ignored).
  status=0
  cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
    -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^(Done|stat::number_of_executed_units)' "$log" || true
  if ((status != 0)); then
    tail -n 40 "$log" >&2
    echo "fuzz: $target failed (exit $status); its input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
