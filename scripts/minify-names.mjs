// `node scripts/minify-names.mjs GLUE.js MODULE.wasm`: gives every import and export of the wasm a
// short name, in the wasm and in wasm-bindgen's glue alike (both rewritten in place). wasm-bindgen
// names each import `__wbg_<name>_<16 hex digits>` and each closure export
// `wasm_bindgen__convert__closures_____invoke__h<16 hex digits>`: ~170 such names, written once in
// the wasm and once in the glue, cost ~3.5 KB of the gzipped package (the hashes do not compress).
// The glue is the only user of these names, so renaming both sides keeps them matched.
import { readFileSync, writeFileSync } from "node:fs";

const [gluePath, wasmPath] = process.argv.slice(2);
let glue = readFileSync(gluePath, "utf8");
const buf = readFileSync(wasmPath);

let pos = 0;
const leb = () => {
  let r = 0, shift = 0, b;
  do {
    b = buf[pos++];
    r += (b & 0x7f) * 2 ** shift;
    shift += 7;
  } while (b & 0x80);
  return r;
};
const encLeb = (n) => {
  const out = [];
  do {
    let b = n & 0x7f;
    n = Math.floor(n / 128);
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return Buffer.from(out);
};
const name = () => {
  const len = leb();
  const s = buf.toString("utf8", pos, pos + len);
  pos += len;
  return s;
};
const encName = (s) => {
  const b = Buffer.from(s, "utf8");
  return Buffer.concat([encLeb(b.length), b]);
};
/** Short names: $0 ... $z, $10 ... (`$` keeps them apart from the glue's own identifiers). */
const short = (i) => "$" + i.toString(36);
const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");

const renames = []; // [old, new, is an import] for the glue
const modules = new Map();
let next = 0;
const out = [buf.subarray(0, 8)];
pos = 8;
while (pos < buf.length) {
  const start = pos, id = buf[pos++], size = leb(), body = pos, end = pos + size;
  if (id === 2) {
    const n = leb(), entries = [encLeb(n)];
    for (let i = 0; i < n; i++) {
      const mod = name(), field = name(), descStart = pos, kind = buf[pos++];
      if (kind === 0) leb();
      else if (kind === 1) (pos++, buf[pos++] & 1 ? (leb(), leb()) : leb());
      else if (kind === 2) buf[pos++] & 1 ? (leb(), leb()) : leb();
      else if (kind === 3) pos += 2;
      else if (kind === 4) (pos++, leb());
      else throw new Error(`import kind ${kind}`);
      if (!modules.has(mod)) modules.set(mod, String.fromCharCode(97 + modules.size));
      // Only wasm-bindgen's own names; the inline snippet's exports (`variadic`) keep theirs.
      let f = field;
      if (/^__wbg_.*_[0-9a-f]{16}$|^__wbindgen_/.test(field)) {
        f = short(next++);
        renames.push([field, f, true]);
      }
      entries.push(encName(modules.get(mod)), encName(f), buf.subarray(descStart, pos));
    }
    pushSection(2, entries);
  } else if (id === 7) {
    const n = leb(), entries = [encLeb(n)];
    for (let i = 0; i < n; i++) {
      const field = name(), descStart = pos;
      pos++;
      leb();
      const f = short(next++);
      renames.push([field, f]);
      entries.push(encName(f), buf.subarray(descStart, pos));
    }
    pushSection(7, entries);
  } else {
    out.push(buf.subarray(start, end));
  }
  pos = end;
}

function pushSection(id, parts) {
  const payload = Buffer.concat(parts);
  out.push(Buffer.from([id]), encLeb(payload.length), payload);
}

for (const [mod, m] of modules) {
  // The key of the imports object (`"./hsq_identity_bg.js": import0`), not the `import` statement.
  const key = JSON.stringify(mod) + ":";
  if (!glue.includes(key)) throw new Error(`the glue does not name the import module ${mod}`);
  glue = glue.split(key).join(JSON.stringify(m) + ":");
}
for (const [from, to, imported] of renames) {
  // `memory` and other plain words only where the glue reads the export: `wasm.memory`.
  const re = /_[0-9a-f]{16}$|^__wbindgen_|^__wbg_|^__externref_|^wasm_bindgen__|^stableidentity_/.test(from)
    ? new RegExp(`\\b${escape(from)}\\b`, "g")
    : new RegExp(`\\bwasm\\.${escape(from)}\\b`, "g");
  const before = glue;
  glue = glue.replace(re, (m) => m.replace(from, to));
  // Every import must be found; an export the glue never reads (`__abort_handler`) need not be.
  if (imported && glue === before) throw new Error(`the glue does not define the import ${from}`);
}
writeFileSync(wasmPath, Buffer.concat(out));
writeFileSync(gluePath, glue);
console.log(`minify-names: ${renames.length} imports and exports renamed`);
