#!/usr/bin/env bash
# Fuzzes the relay for SECONDS in total (default 600): the proptest targets of
# relay/tests/api/fuzz.rs (assertion parsing; request bodies through the router), each for half
# the time. Prints executions and crashes per target; exits non-zero if any case failed.
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-600}
HSQ_FUZZ_SECS=$((secs / 2)) cargo test -q -p hsq-relay --test api fuzz:: -- --nocapture --test-threads=1 2>&1 | grep -E "^fuzz |panicked|crash|test result"
