#!/usr/bin/env bash
# Builds the npm package into pkg/: Rust -> wasm32 (release, opt-level z), wasm-bindgen
# (--target web), wasm-opt -Oz (binaryen from npm); then the entry (js/index.js: load the wasm,
# re-export the class), the wasm-bindgen glue and its one inline snippet are bundled and minified
# into one ES module, pkg/index.js, beside pkg/hsq_identity_bg.wasm.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
stage=target/pkg-stage
cargo build --quiet --release --target wasm32-unknown-unknown -p hsq-identity
rm -rf "$stage" pkg
mkdir -p "$stage" pkg
wasm-bindgen --target web --no-typescript --out-dir "$stage" --out-name hsq_identity \
  target/wasm32-unknown-unknown/release/hsq_identity.wasm
# binaryen from npm (132): Debian's wasm-opt (108) breaks the reference-types tables rustc emits.
node_modules/.bin/wasm-opt -Oz --converge --strip-debug --strip-producers \
  "$stage/hsq_identity_bg.wasm" -o "$stage/opt.wasm"
# Short names for every import and export (binaryen prints the old -> new map), then the same
# names in the glue (scripts/minify-names.mjs): wasm-bindgen's hashed names do not compress.
node_modules/.bin/wasm-opt --minify-imports-and-exports-and-modules --strip-target-features "$stage/opt.wasm" \
  -o pkg/hsq_identity_bg.wasm > "$stage/names.json"
node scripts/minify-names.mjs "$stage/hsq_identity.js" "$stage/names.json" pkg/hsq_identity_bg.wasm
cp js/index.js "$stage/index.js"
node_modules/.bin/esbuild "$stage/index.js" --bundle --format=esm --minify --target=es2022 \
  --log-level=warning --outfile=pkg/index.js
cp js/index.d.ts pkg/index.d.ts
