#!/usr/bin/env python3
"""Checks the Kubernetes manifests without a cluster.

1. Every example KafkaCluster / Topic (examples/ and the chart's rendered
   output) validates against the openAPIV3Schema of its generated CRD, in
   strict mode: unknown fields are errors, as `kubectl --validate=strict`
   reports them.
2. `kubectl create --dry-run=client` accepts crds/, examples/ and the
   rendered chart, against a local discovery endpoint that serves the
   built-in kinds used here plus the resources the CRDs define (read from
   crds/, not written by hand). kubectl needs discovery to map a kind to
   its resource even for a client-side dry run.

3. The sluice-cluster chart rendered with its examples/secure.yaml values
   (RENDERED_CLUSTER_YAML) validates the same way, and is the cluster and
   users of examples/kafkacluster-secure.yaml and examples/kafkauser.yaml:
   the chart's values say what the examples say.

Usage: check_manifests.py KUBECTL RENDERED_CHART_YAML RENDERED_CLUSTER_YAML
"""

import copy
import glob
import http.server
import json
import os
import subprocess
import sys
import tempfile
import threading

import jsonschema
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def strict(schema):
    """Adds additionalProperties: false wherever the schema lists its
    properties and does not preserve unknown fields."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(s)
    return s


def crd_schemas():
    out = {}
    for path in sorted(glob.glob(os.path.join(ROOT, "crds", "*.yaml"))):
        for crd in load_docs(path):
            spec = crd["spec"]
            for v in spec["versions"]:
                key = (f"{spec['group']}/{v['name']}", spec["names"]["kind"])
                out[key] = (spec, v)
    return out


def validate_custom_resources(docs, schemas, where):
    checked = 0
    failures = []
    for d in docs:
        key = (d.get("apiVersion"), d.get("kind"))
        if key not in schemas:
            continue
        _, version = schemas[key]
        schema = strict(version["schema"]["openAPIV3Schema"])
        # apiVersion/kind/metadata are the API server's, not the CRD's.
        body = {k: v for k, v in d.items() if k not in ("apiVersion", "kind", "metadata")}
        schema.get("properties", {}).pop("metadata", None)
        for field in ("apiVersion", "kind"):
            schema.get("properties", {}).pop(field, None)
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(body), key=str)
        for e in errors:
            failures.append(f"{where}: {d['kind']} {d['metadata'].get('name')}: "
                            f"{'/'.join(map(str, e.path))}: {e.message}")
        checked += 1
    return checked, failures


BUILTIN = {
    # group/version -> [(resource, kind, namespaced)]
    "v1": [
        ("services", "Service", True),
        ("serviceaccounts", "ServiceAccount", True),
        ("configmaps", "ConfigMap", True),
        ("pods", "Pod", True),
        ("namespaces", "Namespace", False),
    ],
    "apps/v1": [("deployments", "Deployment", True), ("statefulsets", "StatefulSet", True)],
    "rbac.authorization.k8s.io/v1": [
        ("clusterroles", "ClusterRole", False),
        ("clusterrolebindings", "ClusterRoleBinding", False),
        ("roles", "Role", True),
        ("rolebindings", "RoleBinding", True),
    ],
    "apiextensions.k8s.io/v1": [
        ("customresourcedefinitions", "CustomResourceDefinition", False),
    ],
}


def discovery(schemas):
    groups = copy.deepcopy(BUILTIN)
    for (gv, kind), (spec, _) in schemas.items():
        groups.setdefault(gv, []).append(
            (spec["names"]["plural"], kind, spec["scope"] == "Namespaced")
        )
    routes = {}
    for gv, resources in groups.items():
        routes["/api/v1" if gv == "v1" else f"/apis/{gv}"] = {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": [
                {
                    "name": r,
                    "singularName": k.lower(),
                    "namespaced": ns,
                    "kind": k,
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                }
                for r, k, ns in resources
            ],
        }
    routes["/api"] = {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    named = sorted({gv for gv in groups if gv != "v1"})
    routes["/apis"] = {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": gv.split("/")[0],
                "versions": [{"groupVersion": gv, "version": gv.split("/")[1]}],
                "preferredVersion": {"groupVersion": gv, "version": gv.split("/")[1]},
            }
            for gv in named
        ],
    }
    return routes


def serve(routes):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            path = self.path.split("?")[0]
            body = routes.get(path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def kubectl_dry_run(kubectl, kubeconfig, path):
    r = subprocess.run(
        [kubectl, "--kubeconfig", kubeconfig, "create", "--dry-run=client", "--validate=false",
         "-o", "name", "-f", path],
        capture_output=True, text=True, timeout=120,
    )
    if r.returncode != 0:
        raise SystemExit(f"kubectl create --dry-run=client -f {path} failed:\n{r.stderr}")
    return r.stdout.split()


def main():
    kubectl, rendered, cluster_chart = sys.argv[1], sys.argv[2], sys.argv[3]
    schemas = crd_schemas()
    if len(schemas) != 3:
        raise SystemExit(f"expected 3 CRDs in crds/, found {len(schemas)}")

    failures = []
    total = 0
    for path in sorted(glob.glob(os.path.join(ROOT, "examples", "*.yaml"))):
        n, f = validate_custom_resources(load_docs(path), schemas, os.path.relpath(path, ROOT))
        total += n
        failures += f
    # The checker must catch what it claims to: a misspelt field fails.
    bad = load_docs(os.path.join(ROOT, "examples", "topic.yaml"))
    bad[0]["spec"]["partitons"] = 3
    _, f = validate_custom_resources(bad, schemas, "misspelt")
    if not f:
        raise SystemExit("the strict schema check accepted a misspelt field")
    if failures:
        raise SystemExit("schema validation failed:\n" + "\n".join(failures))
    print(f"schema: {total} example custom resources valid against their CRDs")
    charted = load_docs(cluster_chart)
    n, f = validate_custom_resources(charted, schemas, "charts/sluice-cluster")
    if f or n != 3:
        raise SystemExit(f"the sluice-cluster chart rendered {n} resources:\n" + "\n".join(f))
    examples = [d for name in ("kafkacluster-secure.yaml", "kafkauser.yaml")
                for d in load_docs(os.path.join(ROOT, "examples", name))]
    want = {(d["kind"], d["metadata"]["name"]): d["spec"] for d in examples}
    got = {(d["kind"], d["metadata"]["name"]): d["spec"] for d in charted}
    if got != want:
        raise SystemExit(f"the sluice-cluster chart with examples/secure.yaml renders\n{got}\nnot the examples'\n{want}")
    print("charts/sluice-cluster: examples/secure.yaml renders the secure example's cluster and users")

    server = serve(discovery(schemas))
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = os.path.join(tmp, "config")
        with open(kubeconfig, "w") as f:
            yaml.safe_dump({
                "apiVersion": "v1", "kind": "Config", "current-context": "stub",
                "clusters": [{"name": "stub", "cluster": {
                    "server": f"http://127.0.0.1:{server.server_address[1]}"}}],
                "contexts": [{"name": "stub", "context": {"cluster": "stub", "namespace": "default"}}],
                "users": [{"name": "stub", "user": {}}],
            }, f)
        for path, expect in [
            (os.path.join(ROOT, "crds"), {
                "customresourcedefinition.apiextensions.k8s.io/kafkaclusters.sluice.dev",
                "customresourcedefinition.apiextensions.k8s.io/topics.sluice.dev",
                "customresourcedefinition.apiextensions.k8s.io/kafkausers.sluice.dev"}),
            (os.path.join(ROOT, "examples"), {"kafkacluster.sluice.dev/demo", "kafkacluster.sluice.dev/secure", "kafkauser.sluice.dev/app", "kafkauser.sluice.dev/app-tls", "topic.sluice.dev/orders"}),
            (rendered, None),
            (cluster_chart, None),
        ]:
            names = kubectl_dry_run(kubectl, kubeconfig, path)
            if expect is not None and set(names) != expect:
                raise SystemExit(f"kubectl dry run of {path}: {names}, expected {sorted(expect)}")
            print(f"kubectl create --dry-run=client: {os.path.relpath(path, ROOT)}: {len(names)} objects")
    server.shutdown()


if __name__ == "__main__":
    main()
