// Two (and three) people using the bundled web client in real Chromium: register,
// find each other, request, accept, chat both ways, presence, decline, remove, logoff,
// replacement by a second login, a wrong password, phone width.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  launch, login, newPage, register, shot, startServer, uniqueAccount,
} from './harness.mjs';

let server;
let browser;
const errors = [];

before(async () => {
  server = await startServer();
  browser = await launch();
});

after(async () => {
  if (browser) await browser.close();
  if (server) await server.stop();
});

const friendButton = (page, name) => page.locator('#friends .friend', { hasText: name });

test('two people register, befriend, chat and see each other come and go', async () => {
  const alice = { account: uniqueAccount('Alice'), password: 'alice pass 1', name: 'Alice', sign: 'Off to Mars' };
  const bob = { account: uniqueAccount('Bob'), password: 'bob pass 1', name: 'Bob', sign: 'Hello there' };
  const a = await newPage(browser, errors);
  const b = await newPage(browser, errors);

  await a.goto(`${server.base}/im/www/v1/`);
  await shot(a, 'login');
  await a.click('#show-register');
  await shot(a, 'register');
  await register(a, server.base, alice);
  await register(b, server.base, bob);
  await login(a, server.base, alice.account, alice.password);
  await login(b, server.base, bob.account, bob.password);
  assert.equal(await a.textContent('#me-name'), 'Alice');

  // Alice finds Bob and asks; Bob sees the request live and accepts with an alias.
  await a.fill('#search-name', 'bob');
  await a.click('#search-form button');
  const hit = a.locator('#found .found', { hasText: 'Bob' });
  await hit.locator('input').fill('Hi Bob, it is Alice');
  await hit.locator('button').click();
  await a.waitForSelector('#found button:has-text("Request sent")');
  const request = b.locator('#requests .request', { hasText: 'Alice' });
  await request.waitFor();
  assert.match(await request.textContent(), /Hi Bob, it is Alice/);
  await shot(b, 'requests');
  await request.locator('input').fill('Ally');
  await request.locator('button', { hasText: 'Accept' }).click();

  // Both see each other, online.
  await friendButton(b, 'Ally').locator('.dot.online').waitFor();
  await friendButton(a, 'Bob').locator('.dot.online').waitFor();
  await shot(a, 'friends');

  // Alice writes; the message is delivered; Bob sees an unread count, then the text.
  await friendButton(a, 'Bob').click();
  await a.fill('#message-input', 'Hello Bob!');
  await a.press('#message-input', 'Enter');
  await a.locator('.bubble.mine', { hasText: 'Hello Bob!' }).locator('.status.delivered').waitFor();
  await friendButton(b, 'Ally').locator('.badge', { hasText: '1' }).waitFor();
  await friendButton(b, 'Ally').click();
  await b.locator('.bubble.theirs', { hasText: 'Hello Bob!' }).waitFor();
  await b.fill('#message-input', 'Hi Alice, good to see you');
  await b.click('#composer button[type=submit]');
  await b.locator('.bubble.mine', { hasText: 'good to see you' }).locator('.status.delivered').waitFor();
  await a.locator('.bubble.theirs', { hasText: 'good to see you' }).waitFor();
  await shot(a, 'chat');

  // Bob edits his profile: Alice sees it live under her own alias for him.
  await b.click('#edit-profile');
  await b.fill('#pf-sign', 'Now on Jupiter');
  await shot(b, 'profile');
  await b.click('#profile-save');
  await friendButton(a, 'Bob').locator('.sign', { hasText: 'Now on Jupiter' }).waitFor();

  // Bob logs off: Alice sees the dot go grey; a message to him is stored.
  await b.click('#logoff');
  await b.waitForSelector('#login-form:not([hidden])');
  await friendButton(a, 'Bob').locator('.dot.offline').waitFor();
  await a.fill('#message-input', 'See you later');
  await a.press('#message-input', 'Enter');
  await a.locator('.bubble.mine', { hasText: 'See you later' }).locator('.status.stored').waitFor();

  // Bob comes back and gets it.
  await login(b, server.base, bob.account, bob.password);
  await friendButton(b, 'Ally').locator('.badge').waitFor();
  await friendButton(b, 'Ally').click();
  await b.locator('.bubble.theirs', { hasText: 'See you later' }).waitFor();

  // Alice logs in elsewhere: this window says so plainly and does not reconnect.
  const a2 = await newPage(browser, errors);
  await login(a2, server.base, alice.account, alice.password);
  await a.waitForSelector('#auth-message:has-text("logged in somewhere else")');
  await shot(a, 'replaced');
  await a.context().close();
  await a2.context().close();
  await b.context().close();
  assert.deepEqual(errors, []);
});

test('decline and remove, live on the other side', async () => {
  const carol = { account: uniqueAccount('Carol'), password: 'carol pass', name: 'Carol', sign: '' };
  const dave = { account: uniqueAccount('Dave'), password: 'dave pass', name: 'Dave', sign: '' };
  const c = await newPage(browser, errors);
  const d = await newPage(browser, errors);
  await register(c, server.base, carol);
  await register(d, server.base, dave);
  await login(c, server.base, carol.account, carol.password);
  await login(d, server.base, dave.account, dave.password);

  const ask = async () => {
    await c.fill('#search-name', dave.account);
    await c.click('#search-form button');
    await c.locator('#found .found', { hasText: 'Dave' }).locator('button').click();
    await d.locator('#requests .request', { hasText: 'Carol' }).waitFor();
  };
  await ask();
  await d.locator('#requests .request', { hasText: 'Carol' }).locator('button', { hasText: 'Decline' }).click();
  await c.waitForSelector('#toast:has-text("declined")');
  assert.equal(await d.locator('#requests .request').count(), 0);

  await ask();
  await d.locator('#requests .request', { hasText: 'Carol' }).locator('button', { hasText: 'Accept' }).click();
  await friendButton(c, 'Dave').waitFor();
  await friendButton(d, 'Carol').click();
  await d.click('#remove-friend');
  await d.click('#remove-friend');
  await c.waitForSelector('#toast:has-text("no longer your friend")');
  assert.equal(await friendButton(c, 'Dave').count(), 0);
  assert.equal(await friendButton(d, 'Carol').count(), 0);
  await c.context().close();
  await d.context().close();
  assert.deepEqual(errors, []);
});

test('errors read as sentences, and the app works at phone width by keyboard', async () => {
  const phone = await newPage(browser, errors, { width: 360, height: 740 });
  await phone.goto(`${server.base}/im/www/v1/`);
  await phone.fill('#login-account', 'nobody-here');
  await phone.fill('#login-password', 'wrong');
  await phone.press('#login-password', 'Enter');
  await phone.waitForSelector('#auth-message:has-text("The account or the password is wrong.")');
  assert.doesNotMatch(await phone.textContent('#auth-message'), /\d{3}/);

  const erin = { account: uniqueAccount('Erin'), password: 'erin pass', name: 'Erin', sign: 'hi' };
  await register(phone, server.base, erin);
  // Registering the same account again: a sentence, not a number.
  await phone.click('#show-register');
  await phone.fill('#reg-account', erin.account);
  await phone.fill('#reg-password', 'x long enough');
  await phone.fill('#reg-mail', 'e@example.com');
  await phone.click('#register-form button[type=submit]');
  await phone.waitForSelector('#auth-message:has-text("already taken")');
  await phone.click('#show-login');

  // Keyboard only: tab into the form, type, Enter.
  await phone.fill('#login-account', '');
  await phone.focus('#login-account');
  await phone.keyboard.type(erin.account);
  await phone.keyboard.press('Tab');
  await phone.keyboard.type(erin.password);
  await phone.keyboard.press('Enter');
  await phone.waitForSelector('#app:not([hidden])');
  const width = await phone.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 360, `no horizontal scroll at 360 px (${width})`);
  await shot(phone, 'phone');
  await phone.context().close();
  assert.deepEqual(errors, []);
});
