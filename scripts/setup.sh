#!/usr/bin/env bash
# One-command set-up, run by `npm test` and `npm start` (and safe to run by hand).
# Checks each tool first and installs only what is missing, saying what it installs, so a second
# run takes seconds. Installs: the wasm32 target, wasm-bindgen-cli matching the pinned crate,
# Debian's chromium and chromium-driver, and the npm dev dependencies (binaryen's wasm-opt comes
# from npm: Debian's is too old for the reference-types wasm rustc emits).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'setup: %s\n' "$*"; }

# The wasm-bindgen CLI must equal the crate version pinned in Cargo.toml exactly.
WB_VERSION=$(grep -E '^wasm-bindgen = ' Cargo.toml | grep -oE '"=[0-9]+\.[0-9]+\.[0-9]+"' | tr -d '"=' | head -1)
[ -n "$WB_VERSION" ] || { echo "setup: cannot read the pinned wasm-bindgen version from Cargo.toml" >&2; exit 1; }

export PATH="$HOME/.cargo/bin:$PATH"
command -v cargo >/dev/null || { echo "setup: cargo is missing; install Rust with rustup first" >&2; exit 1; }

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "installing the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WB_VERSION" ]; then
  say "installing wasm-bindgen-cli $WB_VERSION (a few minutes, once)"
  cargo install wasm-bindgen-cli --version "$WB_VERSION" --force
fi

missing=()
command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# PostgreSQL server binaries, for the relay's tests on PostgreSQL (several relays on one
# database): the tests start a temporary cluster themselves, as the postgres user.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  say "installing Debian packages: postgresql"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
fi

# npm dev dependencies: reinstall only when package-lock.json changed since the last install.
lock_sum=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f node_modules/.setup-lock-sum ] || [ "$(cat node_modules/.setup-lock-sum)" != "$lock_sum" ]; then
  say "installing npm dev dependencies"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$lock_sum" > node_modules/.setup-lock-sum
fi

# Python test tools (HubSpot's Python SDK, schemathesis): one virtualenv, reinstalled only when
# scripts/requirements-dev.txt changes.
req_sum=$(sha256sum scripts/requirements-dev.txt | cut -d' ' -f1)
if [ ! -f .cache/venv/.setup-req-sum ] || [ "$(cat .cache/venv/.setup-req-sum)" != "$req_sum" ]; then
  say "installing Python test tools into .cache/venv"
  python3 -m venv .cache/venv
  .cache/venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-dev.txt
  echo "$req_sum" > .cache/venv/.setup-req-sum
fi
