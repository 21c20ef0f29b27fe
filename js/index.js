// hsq-identity: the npm entry. The module is Rust compiled to WebAssembly (src/: the core in
// src/core, the web shell in src/web); this file loads the wasm and re-exports the class that
// wasm-bindgen's glue (./hsq_identity.js) defines.
import init, { StableIdentity } from "./hsq_identity.js";

let ready = null;

/** Fetches and compiles the wasm (streaming when served as application/wasm). `start` calls it. */
export function preload() {
  ready = ready || init({ module_or_path: new URL("./hsq_identity_bg.wasm", import.meta.url) });
  return ready;
}

const start = StableIdentity.start;

/** Starts identifying the page's visitor (src/web/shell.rs), once the wasm is loaded. Rejects only
 * for bad options, naming the option, or when the wasm cannot be loaded. */
StableIdentity.start = async function (options) {
  try {
    await preload();
  } catch (e) {
    ready = null;
    throw new Error("hsq-identity: cannot load its WebAssembly: " + ((e && e.message) || e));
  }
  return start.call(this, options);
};

export { StableIdentity };
