"""Lints and renders the Helm chart with helm-python-sdk (Helm v4 as a library), for tests/chart.rs.

Reads one JSON request on stdin:
    {"chart": DIR, "release": NAME, "namespace": NS, "values": {...}, "existing": [OBJECT, ...]}
and writes one JSON answer on stdout:
    {"helm": VERSION, "lint": {"messages": [...], "errors": [...]}, "manifest": YAML}

Without "existing", "manifest" is what `helm install --dry-run=client` renders: every template, no
cluster contacted, so `lookup` finds nothing (a first install).

With "existing" (core v1 objects such as Secrets), the chart is rendered as an upgrade against a
minimal fake Kubernetes API on 127.0.0.1 that serves discovery for /api/v1 and GETs of exactly those
objects (404 for anything else), so `lookup` sees them as it would in a cluster.

A template or values error is answered as {"error": MESSAGE} with exit status 0, so the caller can
assert on it; anything else (bad request, missing package) exits non-zero.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import helm_python as helm


def fake_api(objects):
    """An HTTP server answering discovery of core v1 and GETs of `objects`; returns the server."""
    by_path = {}
    resources = {}
    for obj in objects:
        kind = obj["kind"]
        plural = kind.lower() + "s"
        resources[plural] = kind
        meta = obj["metadata"]
        by_path[f"/api/v1/namespaces/{meta['namespace']}/{plural}/{meta['name']}"] = obj

    discovery = {
        "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
        "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": []},
        "/version": {"major": "1", "minor": "33", "gitVersion": "v1.33.0"},
        "/api/v1": {
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": [
                {"name": plural, "singularName": kind.lower(), "namespaced": True,
                 "kind": kind, "verbs": ["get"]}
                for plural, kind in resources.items()
            ],
        },
    }

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            body = discovery.get(path) or by_path.get(path)
            status = 200
            if body is None:
                status = 404
                body = {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "NotFound", "code": 404}
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def kubeconfig(server, namespace):
    port = server.server_address[1]
    return json.dumps({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "fake", "user": {"token": "fake"}}],
        "contexts": [{"name": "fake",
                      "context": {"cluster": "fake", "user": "fake", "namespace": namespace}}],
        "current-context": "fake",
    })


def upgrade_manifest(chart_dir, release, namespace, values, existing):
    server = fake_api(existing)
    config = helm.Config(kubeconfig_content=kubeconfig(server, namespace), namespace=namespace)
    chart = helm.Chart.load(chart_dir)
    try:
        rendered = config.render(chart, values, name=release, namespace=namespace,
                                 is_upgrade=True)
    finally:
        chart.close()
        config.close()
        server.shutdown()
    return "".join(
        f"---\n# Source: {name}\n{text}\n"
        for name, text in sorted(rendered.items())
        if not name.endswith("NOTES.txt")
    )


def install_manifest(chart_dir, release, namespace, values):
    config = helm.Config(storage_driver="memory", namespace=namespace)
    try:
        release_info = config.install(chart_dir, release, values, namespace=namespace,
                                      dry_run="client")
    finally:
        config.close()
    return release_info["manifest"]


def main() -> None:
    # Lint evaluates `required`/`fail` leniently and logs each one; the answer carries what matters.
    helm.disable_logging()
    request = json.load(sys.stdin)
    chart = request["chart"]
    release = request["release"]
    namespace = request["namespace"]
    values = request.get("values") or {}
    existing = request.get("existing")

    lint = helm.lint(chart, values, strict=True, namespace=namespace)
    answer = {"helm": helm.helm_sdk_version(), "lint": lint}
    try:
        if existing is None:
            answer["manifest"] = install_manifest(chart, release, namespace, values)
        else:
            answer["manifest"] = upgrade_manifest(chart, release, namespace, values, existing)
    except helm.HelmError as error:
        answer["error"] = str(error)
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    main()
