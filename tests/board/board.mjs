// Drives the ward board in Debian's headless Chromium through playwright-core.
// Protocol with the Rust test (tests/board.rs), one line each on stdout:
//   "A11Y signin <n> <rules>": axe-core's WCAG 2.1 A/AA violations on the
//     sign-in screen; then "READY" once signed in and live. The test then
//     publishes a deteriorating reading; this waits for the alert row and
//     prints "ALERT <patient> <severity> NEWS2 <score>", then
//   "A11Y board <n> <rules>" with the alert showing,
//   "KEYBOARD <reached|unreachable> <focus ring>": Tab reaches the alert's
//     acknowledge button and Enter presses it,
//   "DONE <state>" once the board shows the new state (screenshot saved),
//   "TABLET <n> <fits|overflows>": violations and horizontal fit at 768 px.
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE = require.resolve("axe-core/axe.min.js");
const { BOARD_URL, BOARD_TOKEN, CHROMIUM, SCREENSHOT } = process.env;

/** WCAG 2.0/2.1 level A and AA violations, as "rule(nodes)". */
async function wcag(page) {
  await page.addScriptTag({ path: AXE });
  const violations = await page.evaluate(async () => {
    const r = await globalThis.axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] },
    });
    return r.violations.map((v) => `${v.id}(${v.nodes.length})`);
  });
  for (const v of violations) console.error(`axe: ${v}`);
  return `${violations.length} ${violations.join(" ")}`.trim();
}

const browser = await chromium.launch({
  executablePath: CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await page.goto(BOARD_URL);
  console.log(`A11Y signin ${await wcag(page)}`);
  await page.getByLabel("Access token").fill(BOARD_TOKEN);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForSelector("body[data-live=yes]", { timeout: 30000 });
  console.log("READY");
  const row = page.locator("#alerts tbody tr").first();
  await row.waitFor({ timeout: 60000 });
  const patient = await row.locator("td").nth(1).textContent();
  const severity = await row.locator(".sev").textContent();
  // The patient's row follows the alert (it reloads on every alert event).
  const cell = page.locator(`#patients tr[data-patient="${patient}"] .news2`).filter({ hasNotText: "not scored" });
  await cell.waitFor({ timeout: 30000 });
  const news2 = await cell.textContent();
  console.log(`ALERT ${patient} ${severity} NEWS2 ${news2}`);
  console.log(`A11Y board ${await wcag(page)}`);

  // Keyboard only: Tab to the acknowledge button, Enter to press it.
  const name = `Acknowledge alert for patient ${patient}`;
  let reached = false;
  let ring = "none";
  for (let i = 0; i < 80 && !reached; i++) {
    await page.keyboard.press("Tab");
    reached = await page.evaluate((n) => document.activeElement?.getAttribute("aria-label") === n, name);
  }
  if (reached) {
    ring = await page.evaluate(() => {
      const s = getComputedStyle(document.activeElement);
      return s.outlineStyle !== "none" && s.outlineWidth !== "0px" ? "focus-visible" : "no-focus-ring";
    });
    await page.keyboard.press("Enter");
  }
  console.log(`KEYBOARD ${reached ? "reached" : "unreachable"} ${ring}`);
  await page.locator("#alerts tbody tr .state", { hasText: "acknowledged" }).first().waitFor({ timeout: 30000 });
  const state = await row.locator(".state").textContent();
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  console.log(`DONE ${state}`);

  // A tablet held upright: everything still fits without sideways scrolling.
  await page.setViewportSize({ width: 768, height: 1024 });
  const fits = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
  await page.screenshot({ path: SCREENSHOT.replace(/\.png$/, "-tablet.png"), fullPage: true });
  console.log(`TABLET ${await wcag(page)} ${fits ? "fits" : "overflows"}`.replace(/ +/g, " "));
} finally {
  await browser.close();
}
