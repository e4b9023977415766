// Shared pieces of the browser tests: a real imd on a free port with its own
// database, Debian's Chromium through playwright-core, and pages that fail the test on
// any console error.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
export const repo = path.resolve(here, '..', '..');
export const shots = path.join(repo, 'target', 'screenshots');

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Starts imd; resolves with { base, log, restart, stop }. `maxDevices` is `[session]
 * max_devices` (1 by default, the seed's single session). `restart()` stops it with
 * SIGTERM (its sessions close with 1001) and starts it again on the same port and
 * database.
 */
export async function startServer({ maxDevices = 1 } = {}) {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imd-browser-'));
  const conf = path.join(dir, 'imd.conf');
  fs.writeFileSync(conf, `
[server]
listen = "127.0.0.1:${port}"
web_root = "${process.env.IMD_WEB_ROOT || path.join(repo, 'www')}"
[tls]
listen = ""
[store]
path = "${path.join(dir, 'imd.sqlite3')}"
synchronous = "normal"
[password]
argon2_m_kib = 1024
argon2_t = 1
argon2_p = 1
[history]
enabled = true
# One session per user unless asked, as the replacement step of chat.test.mjs expects
# (§11: the default is 5).
[session]
max_devices = ${maxDevices}
[rate_limit]
register_per_min = 0
query_per_min = 0
login_fail_per_min = 0
send_per_s = 0
heartbeat_per_min = 0
`);
  const bin = process.env.IMD_BIN || path.join(repo, 'target', 'release', 'imd');
  const base = `http://127.0.0.1:${port}`;
  let log = '';
  let child;
  const run = async () => {
    child = spawn(bin, ['--config', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    child.stderr.on('data', (d) => { log += d; });
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`imd exited: ${log}`);
      try {
        const r = await fetch(`${base}/im/health`);
        if (r.status === 200) break;
      } catch { /* not up yet */ }
      if (Date.now() > deadline) throw new Error(`imd did not start: ${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  const halt = async () => {
    const running = child;
    running.kill('SIGTERM');
    await new Promise((r) => running.exitCode !== null ? r() : running.once('exit', r));
  };
  await run();
  return {
    base,
    log: () => log,
    restart: async () => {
      await halt();
      await run();
    },
    stop: async () => {
      await halt();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-quic',
      // Pages fulfilled by the test (to add the CSP header) would otherwise count as
      // public and be refused their loopback WebSocket.
      '--disable-features=LocalNetworkAccessChecks'],
  });
}

/**
 * A TCP relay in front of imd that can lose the network: `cut()` drops every
 * connection and refuses new ones at once (what a browser sees when the network goes),
 * `restore()` lets them through again.
 */
export async function startRelay(target) {
  const to = new URL(target);
  const sockets = new Set();
  let cut = false;
  const srv = net.createServer((client) => {
    if (cut) {
      client.destroy();
      return;
    }
    const upstream = net.connect(Number(to.port), to.hostname);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {});
    }
    client.pipe(upstream);
    upstream.pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  return {
    base: `http://127.0.0.1:${srv.address().port}`,
    cut() {
      cut = true;
      for (const s of sockets) s.destroy();
    },
    restore() {
      cut = false;
    },
    stop: () => new Promise((r) => {
      for (const s of sockets) s.destroy();
      srv.close(r);
    }),
  };
}

// The policy the server is to send with static files: the client must run under it
// (no inline script, handler or style attribute).
const CSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'";

/**
 * A new page in its own context; every console error or page error is collected (a
 * CSP violation is one). Static files get the Content-Security-Policy header.
 */
export async function newPage(browser, errors, viewport = { width: 1100, height: 760 }, options = {}) {
  const context = await browser.newContext({ viewport, ...options });
  await context.route('**/im/www/**', async (route) => {
    const response = await route.fetch();
    await route.fulfill({ response, headers: { ...response.headers(), 'content-security-policy': CSP } });
  });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`${m.text()}`); });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  return page;
}

export async function shot(page, name) {
  fs.mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

let counter = 0;
export function uniqueAccount(name) {
  counter += 1;
  return `${name.toLowerCase()}${Date.now().toString(36)}${counter}`;
}

/** A 2×2 PNG, for the avatar upload. */
export const tinyPng = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAIAAAACCAIAAAD91JpzAAAAFklEQVR4nGP8z8DAwMDAxMDAwMDAAAANHQEDasKb6QAAAABJRU5ErkJggg==',
  'base64',
);

export async function register(page, base, { account, password, name, sign }) {
  await page.goto(`${base}/im/www/v1/`);
  await page.click('#show-register');
  await page.fill('#reg-account', account);
  await page.fill('#reg-password', password);
  await page.fill('#reg-mail', `${account}@example.com`);
  await page.fill('#reg-name', name);
  await page.selectOption('#reg-sex', 'other');
  await page.fill('#reg-birthday', '1990-01-02');
  await page.fill('#reg-sign', sign);
  await page.setInputFiles('#reg-picture', { name: 'me.png', mimeType: 'image/png', buffer: tinyPng });
  await page.click('#register-form button[type=submit]');
  await page.waitForSelector('#auth-message.good');
}

/**
 * Logs in by the form, unless the page signs in by itself with the device token this
 * browser kept from an earlier login (the form's "Keep me signed in" is on by default).
 */
export async function login(page, base, account, password) {
  if (!page.url().startsWith(base)) await page.goto(`${base}/im/www/v1/chat.html`);
  await page.waitForSelector('#login-form:not([hidden]), #app:not([hidden])');
  if (await page.isVisible('#app')) return;
  await page.fill('#login-account', account);
  await page.fill('#login-password', password);
  await page.press('#login-password', 'Enter');
  await page.waitForSelector('#app:not([hidden])');
}

/** Registers through the API (faster than the form, for tests about something else). */
export async function registerApi(base, { account, password, name, sign = '' }) {
  const r = await fetch(`${base}/im/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ account, password, name, sign, mail: `${account}@example.com` }),
  });
  const reply = await r.json();
  if (reply.code !== 200) throw new Error(`register ${account}: ${JSON.stringify(reply)}`);
}

/** `a` (logged in as aUser) asks bUser, and `b` accepts under bUser's own alias for a. */
export async function befriend(a, b, aUser, bUser) {
  await a.fill('#search-name', bUser.account);
  await a.click('#search-form button');
  await a.locator('#found .found').first().locator('button', { hasText: /Add friend|Ask again/ }).click();
  const request = b.locator('#requests .request').filter({ hasText: aUser.name.slice(0, 20) });
  await request.locator('button', { hasText: 'Accept' }).click();
  await a.locator('#friends .friend').filter({ hasText: bUser.name.slice(0, 20) }).waitFor();
  await b.locator('#friends .friend').filter({ hasText: aUser.name.slice(0, 20) }).waitFor();
}

/**
 * What sticks out of the page: horizontal scrolling of the document or the sidebar, and
 * visible buttons, dots and badges not wholly inside the viewport. Empty when none.
 */
export function overflow(page) {
  return page.evaluate(() => {
    const out = [];
    const w = document.documentElement.clientWidth;
    const doc = document.documentElement.scrollWidth;
    if (doc > w) out.push(`document scrolls sideways: ${doc} > ${w}`);
    for (const sel of ['.side', '.messages', '.chat-head', '.topbar', '#profile-dialog']) {
      for (const n of document.querySelectorAll(sel)) {
        if (n.offsetParent !== null && n.scrollWidth > n.clientWidth + 1) {
          out.push(`${sel} scrolls sideways: ${n.scrollWidth} > ${n.clientWidth}`);
        }
      }
    }
    for (const n of document.querySelectorAll('button, .dot, .badge, input, .bubble')) {
      const r = n.getBoundingClientRect();
      if (r.width === 0 || n.closest('[hidden]') || n.closest('dialog:not([open])')) continue;
      if (r.left < -1 || r.right > w + 1) {
        out.push(`${n.tagName.toLowerCase()}.${n.className} "${(n.textContent || '').slice(0, 20)}" at ${Math.round(r.left)}..${Math.round(r.right)} of ${w}`);
      }
    }
    return out;
  });
}
