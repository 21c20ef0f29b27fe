#!/usr/bin/env bash
# The Rust web shell's own suites (issue 15), run by scripts/test.sh after the package is built:
# the TypeScript types against a typed usage file, the wasm-bindgen-test suites in headless
# Chromium against a real relay and simulator, and the package's size with where it goes.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

echo "== tsc --noEmit: js/index.d.ts against tests/types/usage.ts =="
node_modules/.bin/tsc -p tests/types

echo "== wasm-bindgen-test (headless Chromium): tests/web.rs, tests/relay.rs =="
node scripts/test-wasm.mjs

echo "== package size =="
# Issue 15's gate: the package (wasm + JS) at most 50 KB gzipped.
node scripts/wasm-size.mjs --gate 50
