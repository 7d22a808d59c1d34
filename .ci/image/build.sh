#!/usr/bin/env bash
# Builds the operator's OCI image from this checkout, FROM scratch (no base image is pulled):
#   bash .ci/image/build.sh                  # -> kafka-backup-operator:<crate version>
#   bash .ci/image/build.sh --context-only   # binary + build context only, for another builder:
#     docker build -f .ci/image/Containerfile target/image-context
#
# 1. `cargo build --release --locked`, reproducibly: paths of this checkout, of CARGO_HOME and of
#    the target directory are mapped to fixed ones (rustc --remap-path-prefix, C compilers'
#    -ffile-prefix-map), debug info is stripped (it is where the remaining paths live) and
#    SOURCE_DATE_EPOCH is the commit's time, so the same commit and toolchain give the same binary
#    wherever it is built.
# 2. .ci/image/context.sh assembles the build context (the binary, its shared libraries, CA
#    bundle, passwd/group) from this Debian machine.
# 3. buildah builds .ci/image/Containerfile with every time set to the commit's (--timestamp): the
#    same binary and Debian packages give the same image ID.
#
# Environment: KBO_IMAGE (name:tag, default kafka-backup-operator:<version>), KBO_IMAGE_SOURCE (the
# org.opencontainers.image.source label; default the git remote `origin`), CARGO_TARGET_DIR.
# Prints the image name, ID, size and the binary's sha256; timings as "[image] <step> took Ns".
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
cd "$repo"

context_only=false
case "${1:-}" in
  --context-only) context_only=true ;;
  "") ;;
  *) echo "usage: $0 [--context-only]" >&2; exit 2 ;;
esac

log() { echo "[image] $*" >&2; }

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
image=${KBO_IMAGE:-kafka-backup-operator:$version}
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then revision="$revision-dirty"; fi
source_url=${KBO_IMAGE_SOURCE:-$(git config --get remote.origin.url 2>/dev/null || echo unknown)}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

target_dir=${CARGO_TARGET_DIR:-$repo/target}
mkdir -p "$target_dir"
target_dir="$(cd "$target_dir" && pwd -P)"
cargo_home="$(cd "${CARGO_HOME:-$HOME/.cargo}" && pwd -P)"
# rustc and gcc apply the last mapping that matches: the target directory (maybe inside the
# checkout) comes last.
remap=("$cargo_home=/cargo" "$repo=/src" "$target_dir=/target")
rustflags=() cflags=()
for pair in "${remap[@]}"; do
  rustflags+=("--remap-path-prefix=$pair")
  cflags+=("-ffile-prefix-map=$pair")
done
export RUSTFLAGS="${RUSTFLAGS:+$RUSTFLAGS }${rustflags[*]}"
export CFLAGS="${CFLAGS:+$CFLAGS }${cflags[*]}" CXXFLAGS="${CXXFLAGS:+$CXXFLAGS }${cflags[*]}"
export CARGO_PROFILE_RELEASE_STRIP=debuginfo

start=$SECONDS
cargo build --release --locked --bin kafka-backup-operator
log "cargo build --release took $((SECONDS - start))s"
binary="$target_dir/release/kafka-backup-operator"
log "binary sha256 $(sha256sum "$binary" | cut -d' ' -f1)"

context="$target_dir/image-context"
rm -rf "$context"
bash .ci/image/context.sh "$binary" "$context"
log "context in $context ($(du -sh "$context/rootfs" | cut -f1))"
if $context_only; then
  echo "$context"
  exit 0
fi

builder=$(command -v buildah || true)
[ -n "$builder" ] || {
  log "buildah is not installed; build with another builder from the context instead:"
  log "  bash .ci/image/build.sh --context-only && docker build -f .ci/image/Containerfile $context"
  exit 1
}
start=$SECONDS
"$builder" bud --quiet --timestamp "$SOURCE_DATE_EPOCH" --identity-label=false --layers=false \
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision" --build-arg "SOURCE=$source_url" \
  -f .ci/image/Containerfile -t "$image" "$context" >/dev/null
log "buildah bud took $((SECONDS - start))s"
id=$("$builder" inspect --type image --format '{{.FromImageID}}' "$image")
size=$("$builder" images --noheading --format '{{.Size}}' "$image" | head -1)
log "image $image id sha256:$id size $size"
echo "$image"
