#!/usr/bin/env bash
# `npm test`: installs what the tests need (scripts/setup.sh), then runs them with vitest.
# With arguments, they go to `vitest run` as they are. Without, the suite runs in two phases: every
# file but the memory-bound test, then that test alone, because a peak RSS measured while other files
# compete for the same two cores measures how far the garbage collector lags, not the cache bound.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ALONE=test/hardening/memory.test.ts
if (($#)); then exec npx vitest run "$@"; fi
npx vitest run --exclude "$ALONE"
npx vitest run "$ALONE"
