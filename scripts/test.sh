#!/usr/bin/env bash
# Every suite: native Rust tests, then the browser tests (headless Chromium driven by Playwright)
# against a real hubspot-sim binary. Each runner prints its own closing lines.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

echo "== cargo test (native) =="
cargo test --workspace --quiet 2>&1

echo "== the relay's API suite again, on PostgreSQL (a temporary cluster the tests start) =="
HSQ_TEST_DB=postgres cargo test -p hsq-relay --test api --quiet 2>&1

echo "== build the package and the servers for the browser tests =="
bash scripts/build-wasm.sh
cargo build --quiet -p hubspot-sim -p hsq-relay

echo "== schemathesis against the live relay (bounded; longer: node scripts/schemathesis.mjs --max-examples 1000) =="
node scripts/schemathesis.mjs --max-examples 60

echo "== node --test (headless Chromium) =="
node --test --test-concurrency=1 tests/e2e/

echo "== HubSpot's official SDKs (Node, Python) against hubspot-sim =="
node --test tests/sdk/
.cache/venv/bin/python tests/sdk/python_sdk_test.py
