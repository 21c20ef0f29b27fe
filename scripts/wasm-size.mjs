// `node scripts/wasm-size.mjs [--gate KB]`: the package's gzipped size (wasm, JS, total) and where
// the wasm's bytes go: code size per crate and the largest functions, read from the names that the
// unoptimized wasm (target/pkg-stage, before wasm-opt) still carries. With --gate, exits 1 when the
// gzipped total is above the gate.
import { readFileSync, existsSync } from "node:fs";
import { gzipSync } from "node:zlib";
import path from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const gz = (f) => gzipSync(readFileSync(path.join(ROOT, f)), { level: 9 }).length;
const kb = (n) => (n / 1024).toFixed(1) + " KB";

/** Function body sizes of a wasm module, with names when it has a name section. */
function functions(buf) {
  let pos = 8;
  const leb = () => {
    let r = 0, shift = 0, b;
    do {
      b = buf[pos++];
      r += (b & 0x7f) * 2 ** shift;
      shift += 7;
    } while (b & 0x80);
    return r;
  };
  let imports = 0, bodies = [], names = new Map(), sections = [];
  while (pos < buf.length) {
    const id = buf[pos++], size = leb(), end = pos + size;
    if (id === 2) {
      for (let n = leb(), i = 0; i < n; i++) {
        // module, field (`pos += leb()` would add to pos as it was before leb() moved it)
        for (let k = 0; k < 2; k++) { const len = leb(); pos += len; }
        const kind = buf[pos++];
        if (kind === 0) (leb(), imports++);
        else if (kind === 1) (pos++, buf[pos++] & 1 ? (leb(), leb()) : leb());
        else if (kind === 2) buf[pos++] & 1 ? (leb(), leb()) : leb();
        else if (kind === 3) pos += 2;
        else if (kind === 4) (pos++, leb());
      }
    } else if (id === 10) {
      for (let n = leb(), i = 0; i < n; i++) {
        const len = leb();
        bodies.push(len);
        pos += len;
      }
    } else if (id === 0) {
      const nlen = leb(), name = buf.toString("utf8", pos, pos + nlen);
      pos += nlen;
      sections.push([`custom "${name}"`, size]);
      if (name === "name") {
        while (pos < end) {
          const sub = buf[pos++], slen = leb(), send = pos + slen;
          if (sub === 1) for (let n = leb(), i = 0; i < n; i++) {
            const idx = leb(), l = leb();
            names.set(idx, buf.toString("utf8", pos, pos + l));
            pos += l;
          }
          pos = send;
        }
      }
    }
    if (id !== 0) sections.push([["custom", "type", "import", "function", "table", "memory", "global", "export", "start", "element", "code", "data", "datacount"][id] || `#${id}`, size]);
    pos = end;
  }
  return { sections, fns: bodies.map((size, i) => ({ size, name: names.get(imports + i) || `func ${imports + i}` })) };
}

/** The crate a (demangled, as rustc names it) function belongs to. */
function crateOf(name) {
  if (/flt2dec|fmt::float|bignum|diy_float|<f64 as/.test(name)) return "core (f64 formatting)";
  // The standard library's names carry a hash: core[c5930c85a12de822]::...
  const m = /^(?:<)?(?:_?<)?([a-z_][a-z0-9_]*)(?:\[[0-9a-f]+\])?::/.exec(name.replace(/^<?&?(mut )?/, ""));
  if (!m) return name.startsWith("__wbg") || name.startsWith("__wbindgen") ? "wasm_bindgen (glue)" : "(other)";
  return m[1];
}

const wasm = gz("pkg/hsq_identity_bg.wasm"), js = gz("pkg/index.js");
console.log(`package, gzip -9: wasm ${kb(wasm)}, JS ${kb(js)}, total ${kb(wasm + js)}`);
console.log(`raw: wasm ${kb(readFileSync(path.join(ROOT, "pkg/hsq_identity_bg.wasm")).length)}, JS ${kb(readFileSync(path.join(ROOT, "pkg/index.js")).length)}`);
const shipped = functions(readFileSync(path.join(ROOT, "pkg/hsq_identity_bg.wasm")));
console.log("sections of the shipped wasm (raw bytes): " + shipped.sections.map(([n, s]) => `${n} ${s}`).join(", "));
const stage = path.join(ROOT, "target/pkg-stage/hsq_identity_bg.wasm");
if (existsSync(stage)) {
  const { fns } = functions(readFileSync(stage));
  const total = fns.reduce((a, f) => a + f.size, 0);
  const byCrate = new Map();
  for (const f of fns) byCrate.set(crateOf(f.name), (byCrate.get(crateOf(f.name)) || 0) + f.size);
  console.log(`\ncode before wasm-opt, ${kb(total)} in ${fns.length} functions, by crate:`);
  for (const [c, s] of [...byCrate].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`  ${kb(s).padStart(9)}  ${(100 * s / total).toFixed(1).padStart(5)}%  ${c}`);
  console.log("largest functions:");
  for (const f of fns.sort((a, b) => b.size - a.size).slice(0, 15)) console.log(`  ${String(f.size).padStart(7)}  ${f.name.slice(0, 110)}`);
}
const gate = process.argv.indexOf("--gate");
if (gate > 0) {
  const limit = Number(process.argv[gate + 1]) * 1024;
  if (wasm + js > limit) {
    console.error(`size gate: ${kb(wasm + js)} is above ${kb(limit)}`);
    process.exit(1);
  }
  console.log(`size gate: ${kb(wasm + js)} is within ${kb(limit)}`);
}
