#!/usr/bin/env bash
# Installs everything squashfs-r2 and its tests need; safe to run again (skips what is present).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for tool in mksquashfs:squashfs-tools tar2sqfs:squashfs-tools-ng squashfuse:squashfuse \
            fuse-overlayfs:fuse-overlayfs fusermount3:fuse3 s3fs:s3fs getfattr:attr fuser:psmisc; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need+=("${tool##*:}")
done
if ((${#need[@]})); then
  if [ "$(id -u)" != 0 ]; then echo "setup: please install: ${need[*]}" >&2; exit 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
[ -d node_modules ] && [ -f node_modules/.package-lock.json ] || npm ci --no-audit --no-fund
[ -f build/Release/fuse_kernel.node ] || bash scripts/build-native.sh # npm ci builds it; an older tree may not have
npm run build
