// `node scripts/minify-names.mjs GLUE.js MAP.json MODULE.wasm`: after binaryen renamed every import
// and export of the wasm to a short name (`wasm-opt --minify-imports-and-exports-and-modules`,
// which prints MAP.json and puts every import in module "a"), gives wasm-bindgen's glue the same
// names (rewritten in place). wasm-bindgen names each import `__wbg_<name>_<16 hex digits>` and
// each closure export `wasm_bindgen__convert__closures_____invoke__h<16 hex digits>`: ~170 such
// names, written once in the wasm and once in the glue, cost ~3.5 KB of the gzipped package (the
// hashes do not compress). The glue is the only user of these names. Any name or module the glue
// does not have fails the build, so a wasm-bindgen upgrade that changes the glue's shape is caught.
import { readFileSync, writeFileSync } from "node:fs";

const [gluePath, mapPath, wasmPath] = process.argv.slice(2);
let glue = readFileSync(gluePath, "utf8");
// binaryen prints the map as JSON with trailing commas; take it as JSON once those are gone.
const map = JSON.parse(readFileSync(mapPath, "utf8").replace(/,(\s*[\]}])/g, "$1"));
const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
const replace = (re, to, what) => {
  const before = glue;
  glue = glue.replace(re, to);
  if (glue === before) throw new Error(`minify-names: the glue does not have ${what}`);
};

// The wasm now imports from one module; check that with the engine's own reader of the format.
const modules = new Set(WebAssembly.Module.imports(new WebAssembly.Module(readFileSync(wasmPath))).map((i) => i.module));
if (modules.size !== 1) throw new Error(`minify-names: expected one import module, found ${[...modules].join(", ")}`);
const [moduleName] = modules;

const BG = "./hsq_identity_bg.js";
const extra = []; // imports from other modules (wasm-bindgen's inline snippets), now in the one module
for (const [mod, from, to] of map.imports) {
  if (mod === BG) replace(new RegExp(`(\\n\\s+)${escape(from)}(?=: )`), `$1${to}`, `the import ${from}`);
  else {
    const ns = glue.match(new RegExp(`import \\* as (\\w+) from ${escape(JSON.stringify(mod))}`));
    if (!ns) throw new Error(`minify-names: the glue does not import ${mod}`);
    extra.push(`${JSON.stringify(to)}: ${ns[1]}.${from}`);
  }
}
for (const [from, to] of map.exports) {
  // An export the glue never reads (`__abort_handler`) need not be there.
  glue = glue.replace(new RegExp(`\\bwasm\\.${escape(from)}\\b`, "g"), `wasm.${to}`);
}
// The object handed to instantiate: one module, holding the snippets' functions too.
replace(new RegExp(`\\n\\s+${escape(JSON.stringify(BG))}: (\\w+),`), (_, obj) => `\n${JSON.stringify(moduleName)}: Object.assign(${obj}, {${extra.join(", ")}}),`, `the import module ${BG}`);
for (const mod of new Set(map.imports.map(([m]) => m).filter((m) => m !== BG))) {
  replace(new RegExp(`\\n\\s+${escape(JSON.stringify(mod))}: \\w+,`), "", `the import module ${mod}`);
}
writeFileSync(gluePath, glue);
console.log(`minify-names: ${map.imports.length} imports and ${map.exports.length} exports renamed`);
