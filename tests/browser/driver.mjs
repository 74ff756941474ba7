// tests/browser/driver.mjs: a headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core) behind a JSON-lines protocol on stdin/stdout,
// so that tests/integration/test_browser.py keeps the test logic in
// Python. One request per line: {"id": N, "cmd": "...", ...}; one answer
// per line: {"id": N, "ok": true, "result": ...} or {"id": N, "ok": false,
// "error": "..."}. Page console lines and errors are kept for "logs".
// Every command acts on the first page unless it names another ("page":
// NAME) that "open" created: a tab of its own browser context, so its
// storage (and the demo's viewer identity) is its own.
import { chromium } from "playwright-core";
import readline from "node:readline";

const executablePath = process.env.RTW_CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage"],
});
const logs = [];
async function newPage(name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const p = await context.newPage();
  const tag = name === "main" ? "" : `[${name}] `;
  p.on("console", (m) => logs.push(`${tag}console.${m.type()}: ${m.text()}`));
  p.on("pageerror", (e) => logs.push(`${tag}pageerror: ${e.message}`));
  p.on("requestfailed", (r) => logs.push(`${tag}requestfailed: ${r.method()} ${r.url()} ${r.failure()?.errorText}`));
  return p;
}
const pages = { main: await newPage("main") };
let page = pages.main;

const commands = {
  // a new named tab (its own context) at url
  open: async (a) => {
    pages[a.name] = await newPage(a.name);
    const r = await pages[a.name].goto(a.url, { waitUntil: "load" });
    return r && r.status();
  },
  goto: (a) => page.goto(a.url, { waitUntil: "load" }).then((r) => r && r.status()),
  reload: () => page.reload({ waitUntil: "load" }).then((r) => r && r.status()),
  click: (a) => page.click(a.selector, { timeout: a.timeout || 10000 }),
  fill: (a) => page.fill(a.selector, a.value, { timeout: a.timeout || 10000 }),
  press: (a) => page.press(a.selector, a.key, { timeout: a.timeout || 10000 }),
  text: (a) => page.textContent(a.selector, { timeout: a.timeout || 10000 }),
  // expr: a JS expression evaluated in the page
  eval: (a) => page.evaluate(a.expr),
  // waits until the expression is truthy in the page; returns its value
  waitFor: (a) => page.waitForFunction(a.expr, null, { timeout: a.ms || 15000, polling: 50 })
    .then((h) => h.jsonValue()),
  screenshot: (a) => page.screenshot({ path: a.path, fullPage: true }).then(() => a.path),
  logs: () => logs.slice(),
};

const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  if (!line.trim()) continue;
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    process.stdout.write(JSON.stringify({ id: null, ok: false, error: "bad request line" }) + "\n");
    continue;
  }
  if (req.cmd === "close") break;
  const fn = commands[req.cmd];
  try {
    if (!fn) throw new Error(`unknown command ${req.cmd}`);
    page = pages[req.page || "main"];
    if (!page) throw new Error(`no page ${req.page}`);
    const result = await fn(req);
    process.stdout.write(JSON.stringify({ id: req.id, ok: true, result: result === undefined ? null : result }) + "\n");
  } catch (e) {
    process.stdout.write(JSON.stringify({ id: req.id, ok: false, error: String(e && e.message || e) }) + "\n");
  }
}
await browser.close();
process.exit(0);
