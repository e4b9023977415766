// The web client as people used it, and as it broke: long text, a lost network, the
// reconnect, clearing a profile, deleting an account, registration mistakes, who is
// who, links, the unread title and notifications. Two (or three) browser contexts
// where the other side matters.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  befriend, launch, login, newPage, overflow, registerApi, shot, startRelay, startServer,
  uniqueAccount,
} from './harness.mjs';

let server;
let relay;
let browser;
const errors = [];

before(async () => {
  server = await startServer();
  relay = await startRelay(server.base);
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
  if (relay) await relay.stop();
  if (server) await server.stop();
});

async function person(name, extra = {}) {
  const user = { account: uniqueAccount(name.slice(0, 8)), password: `${name} password`, name, ...extra };
  await registerApi(server.base, user);
  return user;
}

const friendButton = (page, name) => page.locator('#friends .friend').filter({ hasText: name });

// A browser cannot show the network going away while the page stays up; these
// errors are the relay refusing, which is what this test wants.
const netErrors = (list) => list.filter((e) => !/ERR_CONNECTION|WebSocket connection|Failed to load resource/.test(e));

test('64-character names and 256-character signatures, notes and messages stay on screen', async () => {
  const wide = 'W'.repeat(64);
  const sign = 'S'.repeat(256);
  const alice = await person(`A${wide}`.slice(0, 64), { sign });
  const bob = await person(`B${wide}`.slice(0, 64), { sign });
  const a = await newPage(browser, errors);
  const b = await newPage(browser, errors);
  await login(a, server.base, alice.account, alice.password);
  await login(b, server.base, bob.account, bob.password);
  assert.deepEqual(await overflow(a), [], 'top bar with a long name');

  await a.fill('#search-name', bob.account);
  await a.click('#search-form button');
  const hit = a.locator('#found .found');
  await hit.locator('input').fill('N'.repeat(256));
  await hit.locator('button', { hasText: 'Add friend' }).click();
  await a.waitForSelector('#found button:has-text("Request sent")');
  assert.deepEqual(await overflow(a), [], 'search result and sent request');
  await b.locator('#requests .request').waitFor();
  assert.deepEqual(await overflow(b), [], 'received request');
  await shot(b, 'long-request');
  await b.locator('#requests .request button', { hasText: 'Accept' }).click();
  await friendButton(a, 'BWWW').locator('.dot.online').waitFor();

  await friendButton(b, 'AWWW').click();
  await b.fill('#message-input', `${'M'.repeat(600)} https://example.com/${'p'.repeat(300)}`);
  await b.press('#message-input', 'Enter');
  await friendButton(a, 'BWWW').locator('.badge').waitFor();
  assert.deepEqual(await overflow(a), [], 'friend with badge and dot');
  await shot(a, 'long-friend');
  await friendButton(a, 'BWWW').click();
  await a.locator('.bubble.theirs').waitFor();
  assert.deepEqual(await overflow(a), [], 'chat with a long title and message');
  await shot(a, 'long-chat');

  await a.setViewportSize({ width: 360, height: 740 });
  assert.deepEqual(await overflow(a), [], 'chat at phone width');
  await a.click('#back');
  assert.deepEqual(await overflow(a), [], 'friends at phone width');
  await shot(a, 'long-phone');
  await a.context().close();
  await b.context().close();
  assert.deepEqual(errors, []);
});

test('offline: every action says so and changes nothing, presence is unknown; back online it all works', async () => {
  const alice = await person('Alice');
  const bob = await person('Bob');
  const carol = await person('Carol');
  relay.restore();
  const local = [];
  const a = await newPage(browser, local);
  const b = await newPage(browser, errors);
  const c = await newPage(browser, errors);
  await login(a, relay.base, alice.account, alice.password);
  await login(b, server.base, bob.account, bob.password);
  await login(c, server.base, carol.account, carol.password);
  await befriend(b, a, bob, alice);
  // Carol asks Alice; Alice will try to decline it while offline.
  await c.fill('#search-name', alice.account);
  await c.click('#search-form button');
  await c.locator('#found .found button', { hasText: 'Add friend' }).click();
  await a.locator('#requests .request', { hasText: 'Carol' }).waitFor();
  await friendButton(a, 'Bob').locator('.dot.online').waitFor();

  relay.cut();
  await a.locator('#conn-banner button', { hasText: 'Reconnect now' }).waitFor();
  await friendButton(a, 'Bob').locator('.dot.unknown').waitFor();
  assert.equal(await friendButton(a, 'Bob').locator('.dot.online').count(), 0, 'no green dot while I am offline');
  await shot(a, 'offline');

  const offline = /cannot reach the server/i;
  await a.locator('#requests .request button', { hasText: 'Decline' }).click();
  assert.match(await a.textContent('#toast'), offline);
  assert.equal(await a.locator('#requests .request').count(), 1, 'the request stays: the server never heard');

  await a.fill('#search-name', carol.account);
  await a.click('#search-form button');
  assert.match(await a.textContent('#toast'), offline);

  await friendButton(a, 'Bob').click();
  await a.click('#remove-friend');
  assert.match(await a.textContent('#toast'), offline);
  assert.equal(await friendButton(a, 'Bob').count(), 1);

  await a.click('#edit-profile');
  await a.fill('#pf-sign', 'changed offline');
  await a.click('#profile-save');
  assert.match(await a.textContent('#profile-message'), offline);
  await a.click('#profile-cancel');

  await a.fill('#message-input', 'written while offline');
  await a.press('#message-input', 'Enter');
  const waiting = a.locator('.bubble.mine', { hasText: 'written while offline' });
  await waiting.locator('.status.queued', { hasText: 'cannot reach the server' }).waitFor();
  assert.deepEqual(await overflow(a), []);

  // Back: one click reconnects, presence is known again, the message goes out by itself.
  relay.restore();
  await a.click('#reconnect-now');
  await a.waitForSelector('#conn-banner', { state: 'hidden' });
  await friendButton(a, 'Bob').locator('.dot.online').waitFor();
  await waiting.locator('.status.delivered').waitFor();
  await friendButton(b, 'Alice').locator('.badge', { hasText: '1' }).waitFor();
  assert.equal(await b.locator('#friends .friend .sign', { hasText: 'changed offline' }).count(), 0);

  // The request Carol sent is still there on the server; declining now works and
  // Carol is told who declined.
  await a.locator('#requests .request button', { hasText: 'Decline' }).click();
  await a.waitForSelector('#requests .request', { state: 'detached' });
  await c.waitForSelector(`#toast:has-text("${alice.name} declined your friend request")`);
  await c.locator('#outgoing .sent.declined', { hasText: `Declined by ${alice.name}` }).waitFor();
  for (const p of [a, b, c]) await p.context().close();
  assert.deepEqual(netErrors(local), []);
  assert.deepEqual(errors, []);
});

test('reconnect: at once on "online" and on becoming visible, backing off to 10 s at most', async () => {
  const alice = await person('Alice');
  relay.restore();
  const local = [];
  const a = await newPage(browser, local);
  await a.clock.install();
  await login(a, relay.base, alice.account, alice.password);
  relay.cut();
  const banner = a.locator('#conn-banner');
  await banner.waitFor();
  assert.match(await banner.textContent(), /Trying again in \d+ s/);

  // Let the fake clock run each scheduled wait, and read the next one.
  const waits = [];
  let attempt = '';
  for (let i = 0; i < 7; i += 1) {
    await a.waitForFunction((prev) => {
      const n = document.getElementById('conn-banner').dataset.attempt;
      return n && n !== prev;
    }, attempt);
    attempt = await banner.getAttribute('data-attempt');
    const ms = Number(await banner.getAttribute('data-retry-ms'));
    waits.push(ms);
    await a.clock.runFor(ms);
  }
  assert.ok(Math.max(...waits) <= 10_000, `waits ${waits}`);
  assert.equal(waits.at(-1), 10_000, `waits ${waits}`);
  await shot(a, 'reconnect-banner');

  // The network comes back: the "online" event reconnects without waiting 10 s.
  relay.restore();
  await a.context().setOffline(true);
  await a.context().setOffline(false);
  await a.waitForSelector('#conn-banner', { state: 'hidden' });

  // And so does the page becoming visible again.
  relay.cut();
  await banner.waitFor();
  relay.restore();
  await a.evaluate(() => document.dispatchEvent(new Event('visibilitychange')));
  await a.waitForSelector('#conn-banner', { state: 'hidden' });
  await a.context().close();
  assert.deepEqual(netErrors(local), []);
});

test('profile: emptied fields are cleared, my e-mail shows, and I can delete my account', async () => {
  const alice = await person('Alice', { sign: 'Off to Mars' });
  const bob = await person('Bob');
  const a = await newPage(browser, errors);
  const b = await newPage(browser, errors);
  await login(a, server.base, alice.account, alice.password);
  await login(b, server.base, bob.account, bob.password);
  await befriend(a, b, alice, bob);

  await a.click('#edit-profile');
  assert.equal(await a.inputValue('#pf-mail'), `${alice.account}@example.com`);
  await a.fill('#pf-name', 'Ally');
  await a.selectOption('#pf-sex', 'female');
  await a.fill('#pf-birthday', '1990-01-02');
  await a.click('#profile-save');
  await friendButton(b, 'Alice').waitFor();

  await a.click('#edit-profile');
  await a.fill('#pf-name', '');
  await a.fill('#pf-sign', '');
  await a.selectOption('#pf-sex', '');
  await a.fill('#pf-birthday', '');
  await a.check('#pf-clear-picture');
  await a.click('#profile-save');
  // The first save's toast may still show (4 s): the second is done once its reply
  // has been rendered, and the dialog closed with it.
  await a.waitForSelector('#toast:has-text("Profile saved")');
  await a.waitForFunction((account) => document.querySelector('#me-name').textContent === account,
    alice.account).catch(() => {});
  assert.equal(await a.textContent('#me-name'), alice.account, 'an emptied name is the account again');
  await b.waitForFunction(() => !document.querySelector('#friends .friend .sign').textContent);

  // What the server kept, seen from a fresh login.
  await a.reload();
  await login(a, server.base, alice.account, alice.password);
  await a.click('#edit-profile');
  assert.equal(await a.inputValue('#pf-name'), alice.account);
  for (const id of ['#pf-sign', '#pf-sex', '#pf-birthday']) assert.equal(await a.inputValue(id), '', id);
  await a.fill('#pf-new', 'short');
  await a.fill('#pf-old', alice.password);
  await a.click('#profile-save');
  assert.match(await a.textContent('#profile-message'), /at least 8 characters/);
  await a.fill('#pf-new', '');
  await a.fill('#pf-old', '');

  // Deleting needs the password.
  await a.click('#erase-open');
  await a.fill('#erase-password', 'not my password');
  await a.click('#erase-confirm');
  await a.waitForSelector('#erase-message:has-text("wrong")');
  await shot(a, 'erase');
  await a.fill('#erase-password', alice.password);
  await a.click('#erase-confirm');
  await a.waitForSelector('#auth-message:has-text("Your account was deleted")');
  await b.waitForSelector('#toast:has-text("no longer your friend")');
  await a.fill('#login-account', alice.account);
  await a.fill('#login-password', alice.password);
  await a.press('#login-password', 'Enter');
  await a.waitForSelector('#auth-message:has-text("wrong")');
  await a.context().close();
  await b.context().close();
  assert.deepEqual(errors, []);
});

test('registration marks what is required and names what is wrong', async () => {
  const p = await newPage(browser, errors, { width: 360, height: 740 });
  await p.goto(`${server.base}/im/www/v1/`);
  await p.click('#login-form button[type=submit]');
  await p.waitForSelector('#auth-message:has-text("Enter your account and password")');

  await p.click('#show-register');
  for (const id of ['reg-account', 'reg-password', 'reg-mail']) {
    assert.equal(await p.locator(`label:has(#${id}) .req`).count(), 1, `${id} marked required`);
  }
  for (const id of ['reg-name', 'reg-sign', 'reg-sex']) {
    assert.equal(await p.locator(`label:has(#${id}) .req`).count(), 0, `${id} optional`);
  }
  await shot(p, 'register-required');
  const account = uniqueAccount('Reg');
  await p.fill('#reg-account', account);
  await p.fill('#reg-mail', `${account}@example.com`);
  await p.fill('#reg-password', 'short');
  await p.click('#register-form button[type=submit]');
  await p.waitForSelector('#auth-message:has-text("at least 8 characters")');

  // A field longer than the protocol allows is named (a pasted value, or a form whose
  // maxlength a script removed).
  await p.fill('#reg-password', 'long enough now');
  await p.evaluate(() => document.getElementById('reg-sign').removeAttribute('maxlength'));
  await p.fill('#reg-sign', 'x'.repeat(257));
  await p.click('#register-form button[type=submit]');
  await p.waitForSelector('#auth-message:has-text("signature is too long")');
  await p.context().close();
  assert.deepEqual(errors, []);
});

test('who is who: ids beside names, a labelled alias, the requests I sent and who declined them', async () => {
  const alice = await person('Alice');
  const bob = await person('Bob');
  const a = await newPage(browser, errors);
  const b = await newPage(browser, errors);
  await login(a, server.base, alice.account, alice.password);
  await login(b, server.base, bob.account, bob.password);
  assert.match(await a.textContent('#me-account'), new RegExp(alice.account));

  await a.fill('#search-name', bob.account);
  await a.click('#search-form button');
  const hit = a.locator('#found .found');
  const bobId = await hit.getAttribute('data-id');
  assert.equal(await hit.locator('.ident').textContent(), `#${bobId.slice(0, 8)}`);
  await hit.getByLabel('Note (optional)').fill('hello from Alice');
  await hit.locator('button', { hasText: 'Add friend' }).click();
  const sent = a.locator('#outgoing .sent', { hasText: 'Bob' });
  await sent.filter({ hasText: 'Pending' }).waitFor();

  const request = b.locator('#requests .request', { hasText: 'Alice' });
  await request.waitFor();
  const aliceId = await request.getAttribute('data-id');
  assert.equal(await request.locator('.ident').textContent(), `#${aliceId.slice(0, 8)}`);
  const alias = request.getByLabel('Name in your friend list');
  assert.ok(await alias.isVisible(), 'the alias box has a visible label');
  assert.equal(await alias.inputValue(), 'Alice');

  // The list survives a reload (it lives in this browser, per user).
  await a.reload();
  await login(a, server.base, alice.account, alice.password);
  await sent.filter({ hasText: 'Pending' }).waitFor();
  await shot(a, 'outgoing');

  await request.locator('button', { hasText: 'Decline' }).click();
  await a.waitForSelector('#toast:has-text("Bob declined your friend request")');
  await sent.filter({ hasText: 'Declined by Bob' }).waitFor();
  await sent.locator('button', { hasText: 'Dismiss' }).click();
  await a.waitForSelector('#outgoing-section', { state: 'hidden' });
  await a.context().close();
  await b.context().close();
  assert.deepEqual(errors, []);
});

test('links are links, markup is text, the title counts unread, a hidden tab notifies', async () => {
  const alice = await person('Alice');
  const bob = await person('Bob');
  const a = await newPage(browser, errors);
  const b = await newPage(browser, errors, undefined, { permissions: ['notifications'] });
  // Record the notifications the page shows (the real constructor still runs).
  await b.addInitScript(() => {
    window.shown = [];
    const Real = window.Notification;
    window.Notification = class extends Real {
      constructor(title, options) {
        super(title, options);
        window.shown.push({ title, body: options && options.body });
      }
    };
  });
  await login(a, server.base, alice.account, alice.password);
  await login(b, server.base, bob.account, bob.password);
  await befriend(a, b, alice, bob);

  await friendButton(a, 'Bob').click();
  await a.fill('#message-input', 'see https://example.com/a?b=1. and <b>not bold</b>');
  await a.press('#message-input', 'Enter');
  await friendButton(b, 'Alice').locator('.badge').waitFor();
  assert.equal(await b.title(), '(1) imd chat');
  await friendButton(b, 'Alice').click();
  const bubble = b.locator('.bubble.theirs');
  const link = bubble.locator('a');
  assert.equal(await link.getAttribute('href'), 'https://example.com/a?b=1');
  assert.equal(await link.getAttribute('target'), '_blank');
  assert.equal(await link.getAttribute('rel'), 'noopener noreferrer');
  assert.equal(await link.textContent(), 'https://example.com/a?b=1');
  assert.equal(await bubble.locator('b').count(), 0, 'markup stays text');
  assert.match(await bubble.locator('.text').textContent(), /<b>not bold<\/b>/);
  assert.equal(await b.title(), 'imd chat');

  // Bob's tab goes to the background: a message notifies and counts in the title.
  await b.evaluate(() => {
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await a.fill('#message-input', 'are you there?');
  await a.press('#message-input', 'Enter');
  await b.waitForFunction(() => window.shown.length === 1);
  assert.deepEqual(await b.evaluate(() => window.shown), [{ title: 'Alice', body: 'are you there?' }]);
  assert.equal(await b.title(), '(1) imd chat');
  await a.context().close();
  await b.context().close();
  assert.deepEqual(errors, []);
});
