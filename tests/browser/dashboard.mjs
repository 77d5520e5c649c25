// Loads the broker's dashboard (its [http] endpoint) in headless Chromium (playwright-core driving Debian's
// /usr/bin/chromium) and waits until it shows what the test set up:
//   - "messages in /s" within --tolerance (a fraction) of --rate, once 5 seconds of samples are in;
//   - --queue-client as the first row of the longest queues.
// Then saves a screenshot to --screenshot and prints one line: DASHBOARD rate_in=<shown> longest=<client id>.
// Usage: node dashboard.mjs --url http://127.0.0.1:PORT/ --rate 40 --tolerance 0.3 --queue-client ID
//        --screenshot FILE [--timeout MS]
// Exits 0 on success, 1 with "ERROR ..." (and what the page showed) otherwise.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith("--") ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []),
);
const timeout = Number(args.timeout || 40000);
const rate = Number(args.rate), tolerance = Number(args.tolerance || 0.3);
const profile = await mkdtemp(join(tmpdir(), "mqtt-dashboard-"));
let context, page;
async function finish(line, code) {
  console.log(line);
  try {
    if (page && args.screenshot) await page.screenshot({ path: args.screenshot, fullPage: true });
  } catch {}
  try {
    if (context) await context.close();
  } catch {}
  await rm(profile, { recursive: true, force: true });
  process.exit(code);
}
try {
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
      "--disable-component-update", "--disable-sync"],
  });
  page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (e) => console.error(`page error: ${e.message}`));
  await page.goto(args.url);
  await page.waitForFunction(
    ({ rate, tolerance, client }) => {
      const m = /samples (\d+)/.exec(document.getElementById("status").textContent);
      if (!m || Number(m[1]) < 7) return false;
      const shown = Number(document.getElementById("rate-in").textContent);
      const first = document.querySelector("#queues tr td");
      return Math.abs(shown - rate) <= rate * tolerance && first && first.textContent === client;
    },
    { rate, tolerance, client: args["queue-client"] },
    { timeout, polling: 200 },
  );
  const shown = await page.textContent("#rate-in");
  const longest = await page.textContent("#queues tr td");
  await finish(`DASHBOARD rate_in=${shown} longest=${longest}`, 0);
} catch (e) {
  let shown = "";
  try {
    shown = `rate-in=${await page.textContent("#rate-in")} queues=${await page.textContent("#queues")} status=${await page.textContent("#status")}`;
  } catch {}
  await finish(`ERROR ${e.message.split("\n")[0]} (${shown})`, 1);
}
