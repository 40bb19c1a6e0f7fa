// Headless Chromium (the Debian package, driven by playwright-core) opens the demo page
// and waits for a message to appear in the feed. Spec (argv[2], JSON):
// { url, expect: "text to wait for", screenshot: "path.png", timeoutMs?: 30000,
//   then?: {expect: "text", continuity: "recovered" | "broken"} }.
// Lines on stdout: {type: "connected"} once the page shows it is connected, then
// {type: "seen", text} or {type: "error", message}; with `then`, once the page also shows
// `then.expect` and its continuity line in that state (after a reconnect):
// {type: "continuity", text, seen}. Exit code 0 only when everything was seen.
"use strict";
const path = require("path");
const { chromium } = require(require.resolve("playwright-core", { paths: [path.join(__dirname, "..")] }));

const spec = JSON.parse(process.argv[2]);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_BIN || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 900, height: 600 } });
    await page.goto(spec.url);
    await page.waitForSelector("#state.connected", { timeout: spec.timeoutMs || 30000 });
    out({ type: "connected" });
    const item = page.locator("#messages li", { hasText: spec.expect });
    await item.first().waitFor({ timeout: spec.timeoutMs || 30000 });
    out({ type: "seen", text: await item.first().textContent() });
    if (spec.then) {
      const line = page.locator("#continuity." + spec.then.continuity);
      await line.waitFor({ timeout: spec.timeoutMs || 30000 });
      const later = page.locator("#messages li", { hasText: spec.then.expect });
      await later.first().waitFor({ timeout: spec.timeoutMs || 30000 });
      out({ type: "continuity", text: await line.textContent(), seen: await later.first().textContent() });
    }
    await page.screenshot({ path: spec.screenshot, fullPage: true });
  } catch (e) {
    out({ type: "error", message: String(e && e.message || e) });
    const pages = browser.contexts().flatMap((c) => c.pages());
    if (pages.length) await pages[0].screenshot({ path: spec.screenshot }).catch(() => {});
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
})();
