// Loads index.html in headless Chromium (playwright-core driving Debian's /usr/bin/chromium), from a small HTTP
// server on 127.0.0.1, and reports on stdout:
//   SUBSCRIBED <status text>   once the page's MQTT.js client has subscribed
//   PAGE <messages text>       once the page shows a message containing --expect
// Usage: node run.mjs --broker ws://127.0.0.1:PORT/mqtt --topic T --expect TEXT [--screenshot FILE]
// Exits 0 on success, 1 with "ERROR ..." otherwise; everything is bounded by --timeout (ms, default 30000).
import { createServer } from "node:http";
import { readFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith("--") ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []),
);
const timeout = Number(args.timeout || 30000);
for (const key of ["broker", "topic", "expect"]) {
  if (!args[key]) {
    console.log(`ERROR missing --${key}`);
    process.exit(1);
  }
}

const files = {
  "/": ["index.html", "text/html"],
  "/index.html": ["index.html", "text/html"],
  "/mqtt.min.js": ["node_modules/mqtt/dist/mqtt.min.js", "text/javascript"],
};
const server = createServer(async (req, res) => {
  const entry = files[new URL(req.url, "http://x").pathname];
  if (!entry) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "content-type": entry[1] }).end(await readFile(join(here, entry[0])));
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const httpPort = server.address().port;

const profile = await mkdtemp(join(tmpdir(), "mqtt-browser-"));
let context;
const watchdog = setTimeout(() => finish(`ERROR timed out after ${timeout} ms`, 1), timeout);
async function finish(line, code) {
  clearTimeout(watchdog);
  console.log(line);
  try {
    if (context) await context.close();
  } catch {}
  server.close();
  await rm(profile, { recursive: true, force: true });
  process.exit(code);
}

try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (m) => console.error(`console.${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  const url = `http://127.0.0.1:${httpPort}/index.html?broker=${encodeURIComponent(args.broker)}&topic=${encodeURIComponent(args.topic)}`;
  await page.goto(url);
  await page.waitForFunction(() => {
    const s = document.getElementById("status").textContent;
    return s.startsWith("subscribed") || s.startsWith("error") || s.startsWith("subscribe failed");
  }, null, { timeout });
  const status = await page.textContent("#status");
  if (!status.startsWith("subscribed")) await finish(`ERROR page status: ${status}`, 1);
  console.log(`SUBSCRIBED ${status}`);
  await page.waitForFunction(
    (text) => document.getElementById("messages").textContent.includes(text),
    args.expect,
    { timeout },
  );
  if (args.screenshot) await page.screenshot({ path: args.screenshot });
  const shown = (await page.textContent("#messages")).trim();
  await finish(`PAGE ${shown}`, 0);
} catch (e) {
  await finish(`ERROR ${e.message.split("\n")[0]}`, 1);
}
