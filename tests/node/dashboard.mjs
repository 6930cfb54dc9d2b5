// The dashboard in a real browser: Debian's headless Chromium driven by playwright-core.
//
//   node dashboard.mjs EXPECTED_JSON
//
// EXPECTED_JSON (written by tests/integration/test_dashboard_browser.py) holds the base URL,
// the screenshot folder, the run's window and what the log says: the failed jobs, one failed
// job's events and error, and the failure counts. The script opens the jobs page, filters it
// to `failed` with the form, opens a failed job, checks its timeline and error, opens the
// failure-rate chart for the run's window and checks its table and its SVG bars against the
// log, screenshots each page, and fails on any console error or page error. Its last line is
// `RESULT {json}`; the exit status is 0 only when every check passed.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

const expected = JSON.parse(readFileSync(process.argv[2], "utf8"));
const problems = [];
const pages = [];

function check(condition, message) {
  if (!condition) problems.push(message);
}

function same(actual, wanted, what) {
  const a = JSON.stringify(actual);
  const w = JSON.stringify(wanted);
  check(a === w, `${what}: ${a} in the page, ${w} in the log`);
}

const browser = await chromium.launch({
  executablePath: expected.chromium,
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

try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on("console", (msg) => {
    if (msg.type() === "error") problems.push(`console error on ${page.url()}: ${msg.text()}`);
  });
  page.on("pageerror", (error) => problems.push(`page error on ${page.url()}: ${error.message}`));
  page.on("response", (response) => {
    if (response.status() >= 400) problems.push(`HTTP ${response.status()} for ${response.url()}`);
  });

  async function shot(name) {
    const path = join(expected.screenshots, `${name}.png`);
    await page.screenshot({ path, fullPage: true });
    pages.push({ name, url: page.url(), path });
  }

  // The jobs page, then filtered to failed with its own form.
  await page.goto(`${expected.base}/jobs`);
  const all = await page.locator("#jobs tbody tr[data-job]").count();
  same(all, expected.jobs, "jobs listed");
  const headerFailed = await page.locator('[data-count="failed"]').textContent();
  same(Number(headerFailed), expected.failed_ids.length, "failed count in the header");
  await shot("jobs");

  await page.selectOption("#filter-status", "failed");
  await Promise.all([page.waitForURL(/status=failed/), page.click("#apply")]);
  const failedIds = await page
    .locator("#jobs tbody tr[data-job]")
    .evaluateAll((rows) => rows.map((r) => r.dataset.job));
  same([...failedIds].sort(), [...expected.failed_ids].sort(), "failed jobs");
  const statuses = await page
    .locator("#jobs tbody tr[data-job]")
    .evaluateAll((rows) => rows.map((r) => r.dataset.status));
  check(statuses.every((s) => s === "failed"), `a non-failed job among failed: ${statuses}`);
  await shot("jobs-failed");

  // One failed job: its timeline and its error.
  const job = expected.job;
  await Promise.all([page.waitForURL(`**/jobs/${job.id}`), page.click(`a[href="/jobs/${job.id}"]`)]);
  const timeline = await page
    .locator("#timeline tbody tr")
    .evaluateAll((rows) => rows.map((r) => [Number(r.dataset.version), r.dataset.type]));
  same(timeline, job.events, "timeline");
  same(await page.locator("#error-code").textContent(), job.error_code, "error code");
  same(await page.locator("#error-message").textContent(), job.error_message, "error message");
  same(await page.locator("#status").textContent(), "failed", "status");
  same(await page.locator("#chain").getAttribute("data-verified"), "true", "hash chain");
  await shot("job");

  // The failure-rate chart for the run's window.
  const query = new URLSearchParams({ since: expected.since, until: expected.until, bucket: "1" });
  await page.goto(`${expected.base}/charts/failures?${query}`);
  const bars = await page.locator("#chart svg g.bar").evaluateAll((gs) =>
    gs.map((g) => ({
      finished: Number(g.dataset.finished),
      failed: Number(g.dataset.failed),
      user: Number(g.dataset.user),
      system: Number(g.dataset.system),
      rate: Number(g.dataset.rate),
      drawn: g.querySelector("rect.user").getBBox().height + g.querySelector("rect.system").getBBox().height,
    })),
  );
  const rows = await page.locator("#failures tbody tr").evaluateAll((trs) =>
    trs.map((tr) => Array.from(tr.querySelectorAll("td.num")).map((td) => td.textContent.trim())),
  );
  const sum = (items, key) => items.reduce((total, item) => total + item[key], 0);
  const drawn = {
    finished: sum(bars, "finished"),
    failed: sum(bars, "failed"),
    user: sum(bars, "user"),
    system: sum(bars, "system"),
  };
  same(drawn, expected.failures, "failure counts on the bars");
  const tabled = {
    finished: rows.reduce((t, r) => t + Number(r[0]), 0),
    failed: rows.reduce((t, r) => t + Number(r[2]), 0),
    user: rows.reduce((t, r) => t + Number(r[3]), 0),
    system: rows.reduce((t, r) => t + Number(r[4]), 0),
  };
  same(tabled, expected.failures, "failure counts in the table");
  same(rows.length, bars.length, "table rows and bars");
  for (const bar of bars) {
    const rate = bar.finished ? bar.failed / bar.finished : 0;
    check(Math.abs(bar.rate - rate) < 1e-3, `bar rate ${bar.rate}, counts say ${rate}`);
    check(bar.failed === 0 || bar.drawn > 0, "a bucket with failures has no bar drawn");
  }
  await shot("failures");

  await page.goto(`${expected.base}/charts/latency?${query}`);
  same(await page.locator("#chart-wait svg").count(), 1, "latency chart");
  await shot("latency");
} catch (error) {
  problems.push(`the run stopped: ${error.stack || error}`);
} finally {
  await browser.close();
}

for (const problem of problems) console.error(problem);
console.log(`RESULT ${JSON.stringify({ ok: problems.length === 0, problems, pages })}`);
process.exit(problems.length === 0 ? 0 : 1);
