// Opens the example page (examples/todo) in headless Chromium with playwright-core, for test_browser.py.
//
//   node page.mjs '<config JSON>'
//   config: {url, executable?: "/usr/bin/chromium", lifetime_ms?: 30000, ready_timeout_ms?: 10000}
//
// Prints one JSON object per line on stdout:
//   {"event":"ready", "view"}  the page is live (its list got the join's sync)
//   {"event":"state", "matched", "view"}  the answer to a "wait" command
//   {"event":"error", "message", "view"?, "log"}  something failed (exit code 2)
//   {"event":"closed"}  after "close" (exit code 0)
// Reads one JSON command per line on stdin:
//   {"cmd":"wait", "expect": {items?, summary?, status?}, "timeout_ms"}  waits until the page shows it
//   {"cmd":"screenshot", "path"}   {"cmd":"close"}
// "view" is what the page shows: {status, items: [{id, title, done}], summary}.
// "log" collects the page's console messages, page errors and failed requests, to explain a failure.
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const config = JSON.parse(process.argv[2]);
const print = (message) => process.stdout.write(JSON.stringify(message) + '\n');
const log = [];

// Flags for Debian's chromium on a machine with no network beyond loopback (no background traffic).
const browser = await chromium.launch({
  executablePath: config.executable ?? '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  timeout: 15000,
});

let finishing = false;
async function finish(code) {
  if (finishing) return;
  finishing = true;
  clearTimeout(lifetime);
  await browser.close().catch(() => {});
  process.stdout.write('', () => process.exit(code));
}
const lifetime = setTimeout(() => fail(new Error('lifetime_ms passed')), config.lifetime_ms ?? 30000);

const page = await browser.newPage();
page.on('console', (message) => log.push(`console.${message.type()}: ${message.text()}`));
page.on('pageerror', (error) => log.push(`pageerror: ${error.message}`));
page.on('requestfailed', (request) => log.push(`requestfailed: ${request.url()} ${request.failure()?.errorText}`));

// What the page shows, read from its DOM (the page has no other test hook).
const view = () => page.evaluate(() => ({
  status: document.body.dataset.status,
  items: [...document.querySelectorAll('#todos li')].map((li) => ({
    id: li.dataset.id,
    title: li.querySelector('.title').textContent,
    done: li.classList.contains('done'),
  })),
  summary: document.getElementById('summary').textContent,
}));

async function fail(error) {
  let shown = null;
  try { shown = await view(); } catch { /* the page may be gone */ }
  print({ event: 'error', message: String(error?.message ?? error), view: shown, log });
  await finish(2);
}

try {
  await page.goto(config.url, { timeout: config.ready_timeout_ms ?? 10000 });
  await page.waitForSelector('body[data-status="live"]', { timeout: config.ready_timeout_ms ?? 10000 });
  print({ event: 'ready', view: await view(), log });
} catch (error) {
  await fail(error);
}

async function wait(expect, timeout) {
  try {
    await page.waitForFunction((expected) => {
      const shown = {
        status: document.body.dataset.status,
        items: [...document.querySelectorAll('#todos li')].map((li) => ({
          id: li.dataset.id,
          title: li.querySelector('.title').textContent,
          done: li.classList.contains('done'),
        })),
        summary: document.getElementById('summary').textContent,
      };
      return Object.entries(expected).every(([key, value]) => JSON.stringify(shown[key]) === JSON.stringify(value));
    }, expect, { timeout, polling: 'raf' });
    return true;
  } catch {
    return false;
  }
}

async function run(line) {
  if (!line.trim() || finishing) return;
  const command = JSON.parse(line);
  try {
    if (command.cmd === 'wait') {
      const matched = await wait(command.expect, command.timeout_ms ?? 5000);
      print({ event: 'state', matched, view: await view(), log });
    } else if (command.cmd === 'screenshot') {
      await page.screenshot({ path: command.path, fullPage: true });
      print({ event: 'screenshot', path: command.path });
    } else if (command.cmd === 'close') {
      print({ event: 'closed' });
      await finish(0);
    }
  } catch (error) {
    await fail(error);
  }
}

// Commands run one after the other, in the order they came.
let queue = Promise.resolve();
createInterface({ input: process.stdin })
  .on('line', (line) => { queue = queue.then(() => run(line)); })
  .on('close', () => { queue = queue.then(() => finish(0)); }); // stdin closed: the test is gone
