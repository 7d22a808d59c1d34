#!/usr/bin/env bash
# Assembles the build context of the operator's image (.ci/image/Containerfile) from a built binary
# and this (Debian) machine:
#   OUT_DIR/rootfs/  the root file system: the binary, the shared libraries `ldd` lists for it (the
#                    loader included), the CA bundle, /etc/passwd and /etc/group with the image's
#                    user, nsswitch.conf and, per Debian package a file comes from, its dpkg status
#                    (as distroless images keep them, so scanners see the versions) and copyright
#                    file. No shell, no package manager.
#   OUT_DIR/state/   empty: the Containerfile copies it as the state directory, owned by the user.
#   bash .ci/image/context.sh BINARY OUT_DIR
# Deterministic: the same binary and the same Debian packages give the same tree (modes and the
# order of every list are fixed; the image build sets owners and clamps the times).
set -euo pipefail
umask 022
export LC_ALL=C

[ $# -eq 2 ] || { echo "usage: $0 BINARY OUT_DIR" >&2; exit 2; }
bin=$1 context=$2
out=$context/rootfs
# The image's user (also USER in the Containerfile and runAsUser in the chart: tests/chart.rs
# checks they agree) and its home, the state directory.
uid=65532
state_dir=/var/lib/kafka-backup-operator

[ -x "$bin" ] || { echo "context: $bin is not an executable" >&2; exit 1; }
[ ! -e "$context" ] || [ -z "$(ls -A "$context")" ] || { echo "context: $context is not empty" >&2; exit 1; }
mkdir -p "$out" "$context/state"

copy() { # SOURCE DEST_IN_IMAGE: the file's content (links followed) with its mode.
  local mode; mode=$(stat -L -c %a "$1")
  install -D -m "$mode" "$1" "$out$2"
}

copy "$bin" /usr/local/bin/kafka-backup-operator

# `ldd` prints "name => /path (addr)" per library and "/path (addr)" for the loader.
mapfile -t libs < <(ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' | sort -u)
[ ${#libs[@]} -gt 0 ] || { echo "context: ldd lists no libraries for $bin" >&2; exit 1; }
for lib in "${libs[@]}"; do copy "$lib" "$lib"; done

copy /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt

install -d -m 0755 "$out/etc"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%s:%s:kafka-backup-operator:%s:/sbin/nologin\n' \
  "$uid" "$uid" "$state_dir" >"$out/etc/passwd"
printf 'root:x:0:\nnonroot:x:%s:\n' "$uid" >"$out/etc/group"
printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$out/etc/nsswitch.conf"
chmod 0644 "$out/etc/passwd" "$out/etc/group" "$out/etc/nsswitch.conf"

# The state directory's parent exists here, so that the Containerfile's COPY --chown of state/
# creates only the state directory itself owned by the user.
install -d -m 0755 "$out$(dirname "$state_dir")"

# Where each file came from (Debian packages), for scanners and licences.
if command -v dpkg-query >/dev/null; then
  packages=(ca-certificates)
  for lib in "${libs[@]}"; do
    owner=$(dpkg-query -S "$lib" 2>/dev/null || dpkg-query -S "$(readlink -f "$lib")" 2>/dev/null) \
      || { echo "context: no Debian package owns $lib" >&2; exit 1; }
    packages+=("${owner%%:*}")
  done
  mapfile -t packages < <(printf '%s\n' "${packages[@]}" | sort -u)
  install -d -m 0755 "$out/var/lib/dpkg/status.d"
  for pkg in "${packages[@]}"; do
    dpkg-query -s "$pkg" >"$out/var/lib/dpkg/status.d/${pkg%%:*}"
    chmod 0644 "$out/var/lib/dpkg/status.d/${pkg%%:*}"
    copyright="/usr/share/doc/${pkg%%:*}/copyright"
    if [ -f "$copyright" ]; then copy "$copyright" "$copyright"; fi
  done
fi
