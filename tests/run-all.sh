#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs and starts the real services the tests use
# (Kafka broker, S3, Azure Blob; see .ci/services.sh), builds the operator's image (.ci/image/),
# then runs the checks and every test (tests/image.rs starts the image with podman). Everything
# started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

step() {
  local name=$1; shift
  local start=$SECONDS
  echo "==> $name" >&2
  "$@"
  echo "==> $name took $((SECONDS - start))s" >&2
}

total_start=$SECONDS
# shellcheck source=../.ci/services.sh
. .ci/services.sh
step "cargo fmt --check" cargo fmt --all -- --check
step "cargo clippy" cargo clippy --all-targets --locked -- -D warnings
# The image under test; earlier builds of it (now untagged) leave the cache's image storage.
build_image() {
  KBO_TEST_IMAGE=$(bash .ci/image/build.sh)
  export KBO_TEST_IMAGE
  podman image prune --force >/dev/null
}
step "image build" build_image
step "cargo test" cargo test --locked
echo "==> whole run took $((SECONDS - total_start))s" >&2
