// Drives the ward board in Debian's headless Chromium through playwright-core.
// Protocol with the Rust test (tests/board.rs) on stdout/stdin:
//   prints "READY" once signed in and live; the test then publishes a
//   deteriorating reading; this waits for the alert row, acknowledges it,
//   waits for the new state, saves a screenshot and prints "DONE <state>".
import { chromium } from "playwright-core";

const { BOARD_URL, BOARD_TOKEN, CHROMIUM, SCREENSHOT } = process.env;
const browser = await chromium.launch({
  executablePath: CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-dev-shm-usage"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  await page.goto(BOARD_URL);
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
  await page.getByRole("button", { name: `Acknowledge alert for patient ${patient}` }).click();
  await page.locator("#alerts tbody tr .state", { hasText: "acknowledged" }).first().waitFor({ timeout: 30000 });
  const state = await row.locator(".state").textContent();
  await page.screenshot({ path: SCREENSHOT, fullPage: true });
  console.log(`DONE ${state}`);
} finally {
  await browser.close();
}
