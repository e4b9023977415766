// Several sessions per user and remembered logins (docs/protocol.md §11) in the web
// client: "Keep me signed in" and its device token across a reload and a daemon restart,
// a refused token, logoff forgetting the device, tabs and a second browser of one user
// kept in step, presence per user, and replacement beyond max_devices. Each test fails
// on a client that logs in by password only.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  befriend, launch, login, newPage, registerApi, shot, startServer, uniqueAccount,
} from './harness.mjs';

const MAX_DEVICES = 3;
let server;
let browser;
const errors = [];

before(async () => {
  server = await startServer({ maxDevices: MAX_DEVICES });
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

async function person(name) {
  const user = { account: uniqueAccount(name), password: `${name} password`, name };
  await registerApi(server.base, user);
  return user;
}

/** Every login WebSocket a page opens, with its first frame (the login frame). */
function logins(page) {
  const list = [];
  page.on('websocket', (ws) => {
    if (!ws.url().endsWith('/im/login')) return;
    const entry = { first: null };
    list.push(entry);
    ws.on('framesent', (f) => {
      if (entry.first === null) entry.first = JSON.parse(String(f.payload));
    });
  });
  return list;
}

const kept = (page) => page.evaluate(() => JSON.parse(localStorage.getItem('imd.login') || 'null'));
const friendButton = (page, name) => page.locator('#friends .friend').filter({ hasText: name });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// A daemon going away is a refused connection to the browser; that is this test's point.
const netErrors = (list) => list.filter((e) => !/ERR_CONNECTION|WebSocket connection|Failed to load resource/.test(e));

test('kept signed in: a reload and a daemon restart log in by device token, a refused token shows the form', async () => {
  const alice = await person('Alice');
  const local = [];
  const a = await newPage(browser, local);
  const sockets = logins(a);
  await a.goto(`${server.base}/im/www/v1/`);
  await a.waitForSelector('#login-form:not([hidden])');
  assert.equal(await a.isChecked('#login-remember'), true, 'checked by default');
  assert.equal(await a.getAttribute('#login-remember', 'aria-describedby'), 'login-remember-hint');
  await shot(a, 'login-remember');
  await login(a, server.base, alice.account, alice.password);
  assert.deepEqual(sockets[0].first, { account: alice.account, password: alice.password, remember: true });
  const stored = await kept(a);
  assert.equal(stored.account, alice.account);
  assert.match(stored.token, /^[0-9a-f]{64}$/);
  assert.equal(JSON.stringify(await a.evaluate(() => ({ ...localStorage }))).includes(alice.password), false,
    'no password in storage');

  // A reload: back in the app, by the token, with no password anywhere.
  await a.reload();
  await a.waitForSelector('#app:not([hidden])');
  assert.equal(await a.textContent('#me-name'), 'Alice');
  assert.deepEqual(sockets[1].first, { account: alice.account, device_token: stored.token });

  // The daemon restarts: the socket closes (1001), the page reconnects by itself with
  // the token (the password was never kept), and is online again.
  await server.restart();
  await a.waitForFunction(() => document.querySelector('#me-state').textContent === 'online'
    && document.querySelector('#conn-banner').hidden, null, { timeout: 20_000 });
  assert.ok(sockets.length >= 3);
  assert.deepEqual(sockets.at(-1).first, { account: alice.account, device_token: stored.token });
  assert.equal(await a.isVisible('#app'), true);

  // A token the server refuses (505): dropped, and the form says why.
  await a.evaluate((account) => localStorage.setItem('imd.login',
    JSON.stringify({ account, token: 'f'.repeat(64) })), alice.account);
  await a.reload();
  await a.waitForSelector('#login-form:not([hidden])');
  assert.deepEqual(sockets.at(-1).first, { account: alice.account, device_token: 'f'.repeat(64) });
  assert.match(await a.textContent('#auth-message'), /saved sign-in has expired or was revoked/);
  assert.equal(await kept(a), null);
  assert.equal(await a.isVisible('#app'), false);
  assert.equal(await a.inputValue('#login-account'), alice.account);
  assert.equal(await a.evaluate(() => document.activeElement.id), 'login-password', 'only the password is left to type');
  await shot(a, 'login-token-refused');
  await a.context().close();
  assert.deepEqual(netErrors(local), []);
  assert.deepEqual(errors, []);
});

test('log off forgets this browser (forget=true) in every tab; unchecked, nothing is kept', async () => {
  const alice = await person('Alice');
  const a = await newPage(browser, errors);
  await login(a, server.base, alice.account, alice.password);
  const { token } = await kept(a);
  // A second tab of the same browser signs in by itself.
  const a2 = await a.context().newPage();
  a2.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await a2.goto(`${server.base}/im/www/v1/`);
  await a2.waitForSelector('#app:not([hidden])');

  const [logoff] = await Promise.all([
    a.waitForResponse((r) => r.url().endsWith('/im/logoff')),
    a.click('#logoff'),
  ]);
  assert.equal(logoff.request().postDataJSON().forget, true);
  assert.equal((await logoff.json()).code, 200, 'sent while the session lives, so the server forgets');
  await a.waitForSelector('#login-form:not([hidden])');
  assert.equal(await kept(a), null, 'the token is gone from storage');
  // The other tab logs off with it and says so.
  await a2.waitForSelector('#login-form:not([hidden])');
  assert.match(await a2.textContent('#auth-message'), /logged off in another tab/);

  // The server revoked the token: put back, it is refused.
  await a.evaluate(({ account, t }) => localStorage.setItem('imd.login',
    JSON.stringify({ account, token: t })), { account: alice.account, t: token });
  await a.reload();
  await a.waitForSelector('#login-form:not([hidden])');
  assert.match(await a.textContent('#auth-message'), /expired or was revoked/);
  assert.equal(await kept(a), null);

  // "Keep me signed in" unchecked: no remember, no token, a reload asks again.
  const sockets = logins(a);
  await a.uncheck('#login-remember');
  await login(a, server.base, alice.account, alice.password);
  assert.deepEqual(sockets[0].first, { account: alice.account, password: alice.password });
  assert.equal(await kept(a), null);
  await a.reload();
  await a.waitForSelector('#login-form:not([hidden])');
  assert.equal(await a.isVisible('#app'), false);
  await a.context().close();
  assert.deepEqual(errors, []);
});

test('tabs and a second browser of one user show the same chat, read state and typing; presence per user', async () => {
  const alice = await person('Alice');
  const bob = await person('Bob');
  const b = await newPage(browser, errors);
  const a1 = await newPage(browser, errors);
  await login(b, server.base, bob.account, bob.password);
  await login(a1, server.base, alice.account, alice.password);
  const a2 = await a1.context().newPage();
  a2.setDefaultTimeout(15_000);
  a2.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await a2.goto(`${server.base}/im/www/v1/`);
  await a2.waitForSelector('#app:not([hidden])');
  const a3 = await newPage(browser, errors); // another browser: its own storage
  await login(a3, server.base, alice.account, alice.password);
  const alices = [a1, a2, a3];

  await befriend(a1, b, alice, bob);
  for (const p of alices) await friendButton(p, 'Bob').locator('.dot.online').waitFor();
  await friendButton(b, 'Alice').locator('.dot.online').waitFor();

  // Unread in every session until one of them reads: 307 clears it in the others.
  await friendButton(b, 'Alice').click();
  for (const text of ['one unread', 'two unread']) {
    await b.fill('#message-input', text);
    await b.press('#message-input', 'Enter');
  }
  for (const p of alices) await friendButton(p, 'Bob').locator('.badge', { hasText: '2' }).waitFor();
  await friendButton(a3, 'Bob').click();
  await a3.locator('#messages .bubble.theirs').filter({ hasText: 'two unread' }).waitFor();
  for (const p of [a1, a2]) {
    await friendButton(p, 'Bob').locator('.badge').waitFor({ state: 'detached' });
    assert.equal(await p.title(), 'imd chat');
  }
  await b.locator('#messages .bubble.mine').filter({ hasText: 'two unread' }).locator('.status.read').waitFor();

  // Sent from one tab, shown as mine in the right chat of the others, live.
  await friendButton(a2, 'Bob').click();
  await friendButton(a1, 'Bob').click();
  await a1.fill('#message-input', 'from the first tab');
  await a1.press('#message-input', 'Enter');
  for (const p of [a2, a3]) {
    await p.locator('#messages .bubble.mine').filter({ hasText: 'from the first tab' }).waitFor();
    assert.equal(await friendButton(p, 'Bob').locator('.badge').count(), 0, 'my own message is not unread');
  }
  await b.locator('#messages .bubble.theirs').filter({ hasText: 'from the first tab' }).waitFor();

  // Typing from the friend reaches every session with the chat open.
  await b.locator('#message-input').pressSequentially('wri');
  for (const p of alices) await p.waitForSelector('#typing:has-text("Bob is typing")');
  await b.fill('#message-input', '');
  await shot(a2, 'devices-tab');

  // Presence: online while any session of mine lives, offline after the last.
  await a1.close();
  await a3.context().close();
  await sleep(1000);
  // A message through the server after those closes: Bob has heard what there was.
  await a2.locator('#friends .friend').first().click();
  await a2.fill('#message-input', 'still here');
  await a2.press('#message-input', 'Enter');
  await b.locator('#messages .bubble.theirs').filter({ hasText: 'still here' }).waitFor();
  assert.equal(await friendButton(b, 'Alice').locator('.dot.online').count(), 1, 'one tab still open');
  await a2.context().close();
  await friendButton(b, 'Alice').locator('.dot.offline').waitFor();
  await b.context().close();
  assert.deepEqual(errors, []);
});

test(`a login beyond max_devices (${MAX_DEVICES}) signs out the oldest, which says so and stays out`, async () => {
  const alice = await person('Alice');
  const oldest = await newPage(browser, errors);
  const sockets = logins(oldest);
  await login(oldest, server.base, alice.account, alice.password);
  const tab = await oldest.context().newPage();
  tab.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  await tab.goto(`${server.base}/im/www/v1/`);
  await tab.waitForSelector('#app:not([hidden])');
  const other = await newPage(browser, errors);
  await login(other, server.base, alice.account, alice.password);
  assert.equal(await oldest.isVisible('#app'), true, `${MAX_DEVICES} sessions fit`);

  const newest = await newPage(browser, errors);
  await login(newest, server.base, alice.account, alice.password);
  await oldest.waitForSelector('#login-form:not([hidden])');
  const message = await oldest.textContent('#auth-message');
  assert.match(message, /logged in somewhere else/);
  assert.match(message, /too many devices/);
  assert.equal(await oldest.getAttribute('#auth-message', 'role'), 'alert');
  await shot(oldest, 'devices-replaced');
  const opened = sockets.length;
  // Longer than the first two backoff steps (1 s, 2 s): nothing tries again.
  await sleep(3500);
  await oldest.evaluate(() => document.dispatchEvent(new Event('visibilitychange')));
  await sleep(500);
  assert.equal(sockets.length, opened, 'no reconnection after 513');
  assert.equal(await oldest.isVisible('#login-form'), true);
  // The other tab of that browser and the other browsers are unaffected.
  for (const p of [tab, other, newest]) assert.equal(await p.textContent('#me-state'), 'online');
  assert.notEqual(await kept(tab), null, 'the device stays remembered for its other tab');
  await oldest.context().close();
  await other.context().close();
  await newest.context().close();
  assert.deepEqual(errors, []);
});

test('a password change keeps this browser signed in: a new device token, the old one refused', async () => {
  const alice = await person('Alice');
  const bob = await person('Bob');
  const b = await newPage(browser, errors);
  const a = await newPage(browser, errors);
  const sockets = logins(a);
  await login(b, server.base, bob.account, bob.password);
  await login(a, server.base, alice.account, alice.password);
  await befriend(a, b, alice, bob);
  const before = (await kept(a)).token;

  await a.click('#edit-profile');
  await a.fill('#pf-old', alice.password);
  await a.fill('#pf-new', 'a brand new password');
  await a.click('#profile-save');
  await a.waitForSelector('#toast:has-text("Profile saved")');
  await a.waitForFunction((old) => {
    const k = JSON.parse(localStorage.getItem('imd.login') || 'null');
    return k && k.token !== old;
  }, before);
  assert.deepEqual(sockets.at(-1).first,
    { account: alice.account, password: 'a brand new password', remember: true });
  // Taken over without going offline, and the chat still works on the new session.
  assert.equal(await a.textContent('#me-state'), 'online');
  assert.equal(await a.isHidden('#conn-banner'), true);
  await friendButton(a, 'Bob').click();
  await a.fill('#message-input', 'after the change');
  await a.press('#message-input', 'Enter');
  await a.locator('#messages .bubble.mine').filter({ hasText: 'after the change' }).locator('.status.delivered').waitFor();
  assert.equal(await friendButton(b, 'Alice').locator('.dot.online').count(), 1);

  const after = (await kept(a)).token;
  await a.reload();
  await a.waitForSelector('#app:not([hidden])');
  assert.deepEqual(sockets.at(-1).first, { account: alice.account, device_token: after });
  await a.evaluate(({ account, t }) => localStorage.setItem('imd.login',
    JSON.stringify({ account, token: t })), { account: alice.account, t: before });
  await a.reload();
  await a.waitForSelector('#login-form:not([hidden])');
  assert.match(await a.textContent('#auth-message'), /expired or was revoked/);
  await a.context().close();
  await b.context().close();
  assert.deepEqual(errors, []);
});
