// web/build.mjs: writes web/rtw.classic.js, the classic-script build of the
// ES module web/rtw.js (for <script src> without modules: window.RTW).
// Pure text: drops the `export` keywords and wraps the module in a function
// that returns its exports; no dependencies, no network. `node web/build.mjs`
// writes the file; tests/js/rtw.test.mjs checks that the committed one is
// what build() makes of the committed rtw.js.
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const HEAD = "/* rtw.classic.js: generated from rtw.js by build.mjs (node web/build.mjs); do not edit.\n" +
  " * The same client as the ES module, as a classic script: window.RTW (or module.exports). */\n";

export function build(src) {
  const names = [];
  let body = src.replace(/^export (const|let|function|class) ([A-Za-z_$][\w$]*)/gm, (m, kw, name) => {
    names.push([name, name]);
    return kw + " " + name;
  });
  body = body.replace(/^export \{([^}]*)\};?\n/gm, (m, list) => {
    for (const part of list.split(",")) {
      const [local, as] = part.trim().split(/\s+as\s+/);
      if (local) names.push([as || local, local]);
    }
    return "";
  });
  if (/^\s*(export|import)\b/m.test(body)) throw new Error("rtw.js: an import or export form build.mjs does not handle");
  const indented = body.replace(/^(?=.)/gm, "  ");
  const exports = names.map(([as, local]) => "    " + as + ": " + local).join(",\n");
  return HEAD +
    "(function (root, factory) {\n" +
    "  if (typeof module === \"object\" && module.exports) module.exports = factory();\n" +
    "  else root.RTW = factory();\n" +
    "})(typeof self !== \"undefined\" ? self : this, function () {\n" +
    "  \"use strict\";\n" +
    indented +
    "\n  return {\n" + exports + "\n  };\n});\n";
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const dir = new URL(".", import.meta.url);
  const out = build(readFileSync(new URL("rtw.js", dir), "utf8"));
  writeFileSync(new URL("rtw.classic.js", dir), out);
}
