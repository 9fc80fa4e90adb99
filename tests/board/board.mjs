// Drives the ward board in Debian's headless Chromium through playwright-core.
// Protocol with the Rust test (tests/board.rs), one line each on stdout:
//   "A11Y signin <n> <rules>": axe-core's WCAG 2.1 A/AA violations on the
//     sign-in screen; then "READY" once signed in and live. The test then
//     publishes two deteriorating patients' readings; this waits for both
//     alert rows and prints "ALERT <patient> <severity> NEWS2 <score>" for
//     each (patient order), then
//   "A11Y board <n> <rules>" with the alerts showing,
//   "KEYBOARD ACK <patient> <reached|unreachable> <focus ring> <state>": Tab
//     reaches the first alert's acknowledge button and Enter presses it,
//   "MOUSE ACK <patient> <state>": a click acknowledges the second,
//   "TABLET <n> <fits|overflows>": violations and horizontal fit at 768 px,
//   "MOUSE RESOLVE <patient> <outcome> <gone|shown>": the second alert
//     resolved with a chosen outcome by mouse,
//   "KEYBOARD RESOLVE <patient> <outcome> <gone|shown>": the first resolved
//     by keyboard alone (Tab to the outcome, arrow keys, a re-render of the
//     list as a live event causes, Tab, Enter),
//   "DONE" with the screenshots saved.
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
  const rows = page.locator("#alerts tbody tr");
  // (The board's CSP forbids eval, so waitForFunction cannot be used: poll.)
  await rows.nth(1).waitFor({ timeout: 60000 });
  const patients = [];
  for (let i = 0; i < (await rows.count()); i++) patients.push(await rows.nth(i).locator("td").nth(1).textContent());
  patients.sort();
  for (const patient of patients) {
    const row = page.locator(`#alerts tbody tr`, { has: page.locator("td", { hasText: patient }) });
    const severity = await row.locator(".sev").textContent();
    // The patient's row follows the alert (it reloads on every alert event).
    // A complete score reads "<total> (<band>)"; before it the cell says
    // "unscorable" or "partial: …".
    const cell = page.locator(`#patients tr[data-patient="${patient}"] .news2`).filter({ hasText: /^\d+ \(/ });
    await cell.waitFor({ timeout: 30000 });
    console.log(`ALERT ${patient} ${severity} NEWS2 ${await cell.textContent()}`);
  }
  console.log(`A11Y board ${await wcag(page)}`);
  const [first, second] = patients;
  const alertRow = (p) => page.locator("#alerts tbody tr", { has: page.locator("td", { hasText: p }) });
  const stateOf = async (p) => (await alertRow(p).locator(".state").textContent()).trim();

  /** Tab (from the page's start) until the element with this accessible name has focus. */
  async function tabTo(name) {
    await page.evaluate(() => document.activeElement?.blur());
    for (let i = 0; i < 120; i++) {
      await page.keyboard.press("Tab");
      if (await page.evaluate((n) => document.activeElement?.getAttribute("aria-label") === n, name)) return true;
    }
    return false;
  }
  const focusRing = () => page.evaluate(() => {
    const s = getComputedStyle(document.activeElement);
    return s.outlineStyle !== "none" && s.outlineWidth !== "0px" ? "focus-visible" : "no-focus-ring";
  });

  // Keyboard only: Tab to the first alert's acknowledge button, Enter.
  const reached = await tabTo(`Acknowledge alert for patient ${first}`);
  let ring = "none";
  if (reached) {
    ring = await focusRing();
    await page.keyboard.press("Enter");
    await alertRow(first).locator(".state", { hasText: "acknowledged" }).waitFor({ timeout: 30000 });
  }
  console.log(`KEYBOARD ACK ${first} ${reached ? "reached" : "unreachable"} ${ring} ${await stateOf(first)}`);

  // Mouse: a click on the second alert's acknowledge button.
  await page.getByRole("button", { name: `Acknowledge alert for patient ${second}` }).click();
  await alertRow(second).locator(".state", { hasText: "acknowledged" }).waitFor({ timeout: 30000 });
  console.log(`MOUSE ACK ${second} ${await stateOf(second)}`);
  await page.screenshot({ path: SCREENSHOT, fullPage: true });

  // A tablet held upright: everything still fits without sideways scrolling.
  await page.setViewportSize({ width: 768, height: 1024 });
  const fits = await page.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth);
  await page.screenshot({ path: SCREENSHOT.replace(/\.png$/, "-tablet.png"), fullPage: true });
  console.log(`TABLET ${await wcag(page)} ${fits ? "fits" : "overflows"}`.replace(/ +/g, " "));
  await page.setViewportSize({ width: 1280, height: 800 });

  const gone = async (p) => {
    try {
      await alertRow(p).waitFor({ state: "detached", timeout: 30000 });
      return "gone";
    } catch {
      return "shown";
    }
  };
  // Mouse: pick an outcome from the list, click Resolve.
  const outcome2 = page.getByRole("combobox", { name: `Outcome for patient ${second}` });
  await outcome2.click();
  await outcome2.selectOption("advice_given");
  await page.getByRole("button", { name: `Resolve alert for patient ${second}` }).click();
  console.log(`MOUSE RESOLVE ${second} advice_given ${await gone(second)}`);

  // Keyboard only: Tab to the outcome, two arrow presses (reviewed no action
  // -> advice given -> visit arranged), Tab to Resolve, Enter.
  let chosen = "unreachable";
  if (await tabTo(`Outcome for patient ${first}`)) {
    await page.keyboard.press("ArrowDown");
    await page.keyboard.press("ArrowDown");
    // A live event re-renders the list at any moment (here, on purpose):
    // the nurse's focus and her chosen outcome must survive it.
    await page.evaluate(() => globalThis.render());
    chosen = await page.evaluate(() => document.activeElement.value);
    await page.keyboard.press("Tab");
    const onResolve = await page.evaluate((n) => document.activeElement?.getAttribute("aria-label") === n, `Resolve alert for patient ${first}`);
    if (onResolve) await page.keyboard.press("Enter");
    else chosen = "resolve-not-next";
  }
  console.log(`KEYBOARD RESOLVE ${first} ${chosen} ${await gone(first)}`);
  await page.screenshot({ path: SCREENSHOT.replace(/\.png$/, "-resolved.png"), fullPage: true });
  // The test now revokes the token: the board must say so and stop asking
  // (a tab retrying a refused token would be rate limited for nothing).
  let calls = 0;
  page.on("request", (r) => { if (r.url().includes("/api/v1/")) calls += 1; });
  console.log("REVOKE");
  await page.waitForSelector("body[data-signed-out=yes]", { timeout: 60000 });
  const after = calls;
  await page.waitForTimeout(5000); // the old board retried every 2 s
  const focused = await page.evaluate(() => document.activeElement?.id);
  console.log(`SIGNED OUT ${calls - after} ${focused} ${(await page.locator("#status").textContent()).trim()}`);
  console.log(`A11Y signed-out ${await wcag(page)}`);
  console.log("DONE");
} finally {
  await browser.close();
}
