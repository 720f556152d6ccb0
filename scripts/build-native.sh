#!/usr/bin/env bash
# `npm install` (the package's install script) and scripts/setup.sh: builds the kernel engine's native
# helpers (native/fuse_kernel.c -> build/Release/fuse_kernel.node) with node-gyp. Without a compiler
# they are not built, and JavaScript fallbacks do their jobs (src/fs/kernel/addon.ts): a worker thread
# reads /dev/fuse and mount(8) mounts; slower to start, the same otherwise. So a failure here warns and
# does not fail the install.
cd "$(dirname "$0")/.."
gyp=node-gyp
command -v node-gyp >/dev/null 2>&1 || gyp="node $(npm root -g)/npm/node_modules/node-gyp/bin/node-gyp.js"
# The headers of the node that runs us: npm passes its nodedir setting to its scripts; outside npm, ask it.
nodedir=${npm_config_nodedir:-$(npm config get nodedir 2>/dev/null)}
case $nodedir in '' | undefined | null) args=() ;; *) args=(--nodedir="$nodedir") ;; esac
if ! log=$($gyp rebuild "${args[@]}" 2>&1); then
  printf '%s\n' "$log" | tail -n 20 >&2
  echo "squashfs-r2: the native helpers were not built (above); mounts will use slower fallbacks" >&2
fi
exit 0
