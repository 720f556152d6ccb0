#!/usr/bin/env bash
# `npm install` (the package's install script) and scripts/setup.sh: builds the kernel engine's native
# request reader (native/fuse_reader.c -> build/Release/fuse_reader.node) with node-gyp. Without a
# compiler it is not built, and a worker thread reads /dev/fuse instead (src/fs/kernel/reader-thread.ts):
# slower to start, the same otherwise. So a failure here warns and does not fail the install.
cd "$(dirname "$0")/.."
gyp=node-gyp
command -v node-gyp >/dev/null 2>&1 || gyp="node $(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js"
# The headers of the node that runs us: npm passes its nodedir setting to its scripts; outside npm, ask it.
nodedir=${npm_config_nodedir:-$(npm config get nodedir 2>/dev/null)}
case $nodedir in '' | undefined | null) args=() ;; *) args=(--nodedir="$nodedir") ;; esac
if ! log=$($gyp rebuild "${args[@]}" 2>&1); then
  printf '%s\n' "$log" | tail -n 20 >&2
  echo "squashfs-r2: the native request reader was not built (above); a worker thread will read /dev/fuse" >&2
fi
exit 0
