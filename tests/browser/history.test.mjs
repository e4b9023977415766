// Kept conversations (docs/protocol.md §10) in the web client: history pages, unread
// counts from the server, sent/delivered/read ticks, typing, offline friends, resending
// by cid after a reconnect or a reload, gaps in seq, read marks only for a chat in view,
// and a reload that shows the conversation again. Each test fails on a client that
// shows only what arrived live.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  launch, login, newPage, registerApi, shot, startServer, uniqueAccount,
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

const friendButton = (page, name) => page.locator('#friends .friend').filter({ hasText: name });
const bubble = (page, text) => page.locator('#messages .bubble').filter({ hasText: text });

/**
 * A user with a raw login WebSocket (in a page of its own, no client code): `send`
 * writes messages and waits for their acks; `close` ends the session.
 */
async function wire(user) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${server.base}/im/health`);
  const reply = await page.evaluate(({ account, password }) => new Promise((resolve, reject) => {
    const ws = new WebSocket(`${location.origin.replace(/^http/, 'ws')}/im/login`);
    window.acks = new Map();
    ws.onopen = () => ws.send(JSON.stringify({ account, password }));
    ws.onerror = () => reject(new Error('login socket failed'));
    ws.onmessage = (ev) => {
      const m = JSON.parse(ev.data);
      if (!window.ws) {
        window.ws = ws;
        resolve(m);
      } else if (typeof m.id === 'string' && window.acks.has(m.id)) {
        window.acks.get(m.id)(m);
      }
    };
  }), { account: user.account, password: user.password });
  assert.equal(reply.code, 200, `login ${user.account}`);
  return {
    id: reply.profile.id,
    token: reply.token,
    send: (to, payloads) => page.evaluate(({ to: friend, payloads: list }) => Promise.all(
      list.map((payload, i) => new Promise((resolve) => {
        const id = `w${i}`;
        window.acks.set(id, resolve);
        window.ws.send(JSON.stringify({ id, toFriend: friend, payload }));
      })),
    ), { to, payloads }),
    close: () => context.close(),
  };
}

async function post(path, body) {
  const r = await fetch(`${server.base}/im/${path}`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  return r.json();
}

/** Registers people and makes each of them friends with the first; returns them with ids. */
async function friends(...names) {
  const users = [];
  for (const name of names) {
    const user = { account: uniqueAccount(name.slice(0, 8)), password: `${name} password`, name };
    await registerApi(server.base, user);
    users.push(user);
  }
  const wires = [];
  for (const user of users) wires.push(await wire(user));
  users.forEach((u, i) => { u.id = wires[i].id; });
  const [first, ...rest] = wires;
  for (const [i, other] of rest.entries()) {
    const asked = await post('friends/request', { id: first.id, token: first.token, to: other.id });
    assert.equal(asked.code, 200);
    const added = await post('friends/add', {
      id: other.id, token: other.token, from: first.id, name: users[0].name,
    });
    assert.equal(added.code, 200);
    users[i + 1].wire = other;
  }
  users[0].wire = first;
  return users;
}

async function page(user, options) {
  const p = await newPage(browser, errors, undefined, options);
  await login(p, server.base, user.account, user.password);
  return p;
}

/** Alice and Bob, friends, with the raw sockets that made them friends closed. */
async function offlinePair() {
  const [alice, bob] = await friends('Alice', 'Bob');
  await alice.wire.close();
  await bob.wire.close();
  return [alice, bob];
}

/** {@link offlinePair}, each then logged in on a page of their own: Alice's first. */
async function pairOnPages() {
  const [alice, bob] = await offlinePair();
  const a = await page(alice);
  const b = await page(bob);
  return { alice, bob, a, b };
}

/** Makes the page hidden or shown, as a switched tab is. */
function setHidden(p, hidden) {
  return p.evaluate((h) => {
    Object.defineProperty(document, 'hidden', { configurable: true, get: () => h });
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => (h ? 'hidden' : 'visible') });
    document.dispatchEvent(new Event('visibilitychange'));
  }, hidden);
}

/** Records the frames the page's code sends on its WebSocket; call the result to read them. */
async function recordFrames(p) {
  await p.addInitScript(() => {
    window.framesSent = [];
    const send = WebSocket.prototype.send;
    WebSocket.prototype.send = function record(data) {
      try {
        window.framesSent.push(JSON.parse(data));
      } catch { /* not JSON */ }
      return send.call(this, data);
    };
  });
  return () => p.evaluate(() => window.framesSent);
}

const texts = (p) => p.locator('#messages .bubble .text').allTextContents();

test('opening a chat shows its newest page of history; scrolling up loads older pages', async () => {
  const [alice, bob] = await friends('Alice', 'Bob');
  const lines = Array.from({ length: 120 }, (_, i) => `line ${i + 1}`);
  const acks = await bob.wire.send(alice.id, lines);
  assert.deepEqual(acks.map((a) => a.seq), lines.map((_, i) => i + 1));
  await alice.wire.send(bob.id, ['my answer']);
  await alice.wire.close();
  await bob.wire.close();

  // Everything was delivered live, so no login backlog brings it: only history does.
  const a = await page(alice);
  await friendButton(a, 'Bob').click();
  await bubble(a, 'my answer').waitFor();
  let shown = await texts(a);
  assert.equal(shown.length, 50, 'the newest page');
  assert.equal(shown[0], 'line 72');
  assert.equal(shown.at(-1), 'my answer');
  const seqs = await a.locator('#messages .bubble').evaluateAll((n) => n.map((b) => Number(b.dataset.seq)));
  assert.deepEqual(seqs, Array.from({ length: 50 }, (_, i) => 72 + i));
  assert.ok(await a.evaluate(() => {
    const list = document.getElementById('messages');
    return list.scrollTop + list.clientHeight >= list.scrollHeight - 2;
  }), 'opens at the newest message');

  await a.evaluate(() => { document.getElementById('messages').scrollTop = 0; });
  await bubble(a, 'line 22').waitFor();
  shown = await texts(a);
  assert.equal(shown.length, 100);
  assert.equal(shown[0], 'line 22');
  // The last page by keyboard: the button, then focus stays in the list.
  // (Focus without scrolling: scrolled to the top, the list would load the page itself.)
  await a.evaluate(() => document.querySelector('#messages .older button').focus({ preventScroll: true }));
  await a.keyboard.press('Enter');
  await a.locator('#messages .bubble').first().filter({ hasText: 'line 1' }).waitFor();
  assert.equal(await a.evaluate(() => document.activeElement.id), 'messages');
  shown = await texts(a);
  assert.deepEqual(shown, [...lines, 'my answer']);
  assert.equal(await a.locator('#messages .older').count(), 0, 'nothing older is offered');
  await a.context().close();
  assert.deepEqual(errors, []);
});

test('unread counts come from the server and survive a reload', async () => {
  const { bob, a, b } = await pairOnPages();
  await friendButton(a, 'Bob').click();
  for (const t of ['one', 'two', 'three']) {
    await a.fill('#message-input', t);
    await a.press('#message-input', 'Enter');
  }
  await friendButton(b, 'Alice').locator('.badge', { hasText: '3' }).waitFor();

  await b.reload();
  await login(b, server.base, bob.account, bob.password);
  await friendButton(b, 'Alice').locator('.badge', { hasText: '3' }).waitFor();
  assert.equal(await b.title(), '(3) imd chat');

  await friendButton(b, 'Alice').click();
  await bubble(b, 'three').waitFor();
  await bubble(a, 'three').locator('.status.read').waitFor();
  await b.reload();
  await login(b, server.base, bob.account, bob.password);
  await friendButton(b, 'Alice').waitFor();
  assert.equal(await friendButton(b, 'Alice').locator('.badge').count(), 0, 'read stays read');
  assert.equal(await b.title(), 'imd chat');
  await a.context().close();
  await b.context().close();
  assert.deepEqual(errors, []);
});

test('my messages show delivered (306) and read (307) ticks', async () => {
  const { a, b } = await pairOnPages();
  await friendButton(a, 'Bob').click();
  await a.fill('#message-input', 'tick me');
  await a.press('#message-input', 'Enter');
  const mine = bubble(a, 'tick me');
  await mine.locator('.status.delivered', { hasText: '✓✓ delivered' }).waitFor();
  assert.equal(await mine.locator('.status.read').count(), 0, 'Bob has not opened the chat');
  assert.match(await mine.getAttribute('data-seq'), /^1$/);

  await friendButton(b, 'Alice').click();
  await mine.locator('.status.read', { hasText: '✓✓ read' }).waitFor();
  await a.context().close();
  await b.context().close();
  assert.deepEqual(errors, []);
});

test('a message to an offline friend is stored, shown as sent, and later delivered', async () => {
  const [alice, bob] = await offlinePair();
  const a = await page(alice);
  await friendButton(a, 'Bob').locator('.dot.offline').waitFor();
  await friendButton(a, 'Bob').click();
  await a.fill('#message-input', 'for later');
  await a.press('#message-input', 'Enter');
  const mine = bubble(a, 'for later');
  await mine.locator('.status.sent', { hasText: '✓ sent' }).waitFor();
  assert.equal(await mine.locator('.status.failed').count(), 0);

  const b = await page(bob);
  await friendButton(b, 'Alice').locator('.badge', { hasText: '1' }).waitFor();
  await mine.locator('.status.delivered').waitFor();
  await friendButton(b, 'Alice').click();
  assert.deepEqual(await texts(b), ['for later'], 'once, though both the backlog and history hold it');
  await a.context().close();
  await b.context().close();
  assert.deepEqual(errors, []);
});

test('typing: notices go out sparingly, show to the friend and expire', async () => {
  const [alice, bob] = await offlinePair();
  const a = await newPage(browser, errors);
  const sent = await recordFrames(a);
  await login(a, server.base, alice.account, alice.password);
  const b = await page(bob);
  await friendButton(b, 'Alice').click();
  await friendButton(a, 'Bob').click();

  await a.locator('#message-input').pressSequentially('hello there, Bob', { delay: 40 });
  await b.locator('#typing', { hasText: 'Alice is typing…' }).waitFor();
  await shot(b, 'typing');
  const typing = (await sent()).filter((f) => f.type === 'typing');
  assert.equal(typing.length, 1, 'one notice for one burst of typing');
  assert.equal(typing[0].to, bob.id);
  // No further notice: it goes away by itself.
  await b.waitForFunction(() => document.getElementById('typing').textContent === '', null, { timeout: 8000 });

  // A message from the friend ends the notice at once.
  await a.locator('#message-input').press('!');
  await b.locator('#typing', { hasText: 'Alice is typing…' }).waitFor();
  await a.press('#message-input', 'Enter');
  await bubble(b, 'hello there, Bob!').waitFor();
  assert.equal(await b.textContent('#typing'), '');
  await a.context().close();
  await b.context().close();
  assert.deepEqual(errors, []);
});

/**
 * Logs `user` in on a page whose login socket runs through the test: `hold.acks` keeps
 * acks from the page, `hold.receive` drops receive frames with that payload, `cut()`
 * drops the connection; `sends` records the send frames the page wrote.
 */
async function routed(user) {
  const p = await newPage(browser, errors);
  const hold = { acks: false, receive: '' };
  const sends = [];
  let live = [];
  await p.routeWebSocket(/\/im\/login$/, (ws) => {
    const upstream = ws.connectToServer();
    live.push([ws, upstream]);
    ws.onMessage((m) => {
      const frame = JSON.parse(m);
      if (typeof frame.toFriend === 'string') sends.push(frame);
      upstream.send(m);
    });
    upstream.onMessage((m) => {
      const frame = JSON.parse(m);
      // An ack is the only frame with a cid and no sender.
      if (hold.acks && typeof frame.cid === 'string' && frame.from === undefined) return;
      if (hold.receive && frame.payload === hold.receive) return;
      ws.send(m);
    });
  });
  await login(p, server.base, user.account, user.password);
  return {
    p,
    hold,
    sends,
    cut() {
      for (const [ws, upstream] of live) {
        ws.close({ code: 4000, reason: 'cut' });
        upstream.close();
      }
      live = [];
    },
  };
}

test('after a reconnect, what was not acked is resent with its cid, once; gaps are fetched', async () => {
  const [alice, bob] = await offlinePair();
  const a = await routed(alice);
  const b = await page(bob);
  // The chat's first page is read before the message is sent: a page read after its
  // commit would carry it, with its cid, and settle it without the ack.
  await Promise.all([
    a.p.waitForResponse((r) => r.url().includes('/im/messages')),
    friendButton(a.p, 'Bob').click(),
  ]);
  await friendButton(b, 'Alice').click();

  // The server stores the message and Bob gets it, but the ack never reaches Alice.
  a.hold.acks = true;
  await a.p.fill('#message-input', 'only once');
  await a.p.press('#message-input', 'Enter');
  await bubble(b, 'only once').waitFor();
  await bubble(a.p, 'only once').locator('.status.sending').waitFor();
  a.hold.acks = false;
  a.cut();
  await a.p.locator('#conn-banner').waitFor();
  await a.p.waitForSelector('#conn-banner', { state: 'hidden' });
  await bubble(a.p, 'only once').locator('.status.read').waitFor();
  const tries = a.sends.filter((f) => f.payload === 'only once');
  assert.equal(tries.length, 2, 'sent again after the reconnect');
  assert.equal(tries[0].cid, tries[1].cid, 'with the same cid');
  assert.equal(await bubble(a.p, 'only once').count(), 1);
  assert.equal(await bubble(b, 'only once').count(), 1);

  // A receive frame lost on the way: the next one's seq shows the gap.
  a.hold.receive = 'lost on the way';
  await b.fill('#message-input', 'lost on the way');
  await b.press('#message-input', 'Enter');
  await bubble(b, 'lost on the way').locator('.status.delivered').waitFor();
  a.hold.receive = '';
  await b.fill('#message-input', 'right after');
  await b.press('#message-input', 'Enter');
  await bubble(a.p, 'right after').waitFor();
  await bubble(a.p, 'lost on the way').waitFor();
  assert.deepEqual((await texts(a.p)).slice(-2), ['lost on the way', 'right after']);

  // One lost with the connection: the login entry's last_seq shows it.
  a.hold.receive = 'lost with the line';
  await b.fill('#message-input', 'lost with the line');
  await b.press('#message-input', 'Enter');
  await bubble(b, 'lost with the line').locator('.status.delivered').waitFor();
  a.hold.receive = '';
  a.cut();
  await bubble(a.p, 'lost with the line').waitFor();

  // What the server holds: each message once.
  await b.reload();
  await login(b, server.base, bob.account, bob.password);
  await friendButton(b, 'Alice').click();
  await bubble(b, 'lost with the line').waitFor();
  assert.deepEqual(await texts(b), ['only once', 'lost on the way', 'right after', 'lost with the line']);
  await a.p.context().close();
  await b.context().close();
  assert.deepEqual(errors, []);
});

test('an unacknowledged message survives a reload, kept by cid only until acked', async () => {
  const [alice, bob] = await offlinePair();
  const a = await routed(alice);
  const b = await page(bob);
  await friendButton(a.p, 'Bob').click();
  a.hold.acks = true;
  await a.p.fill('#message-input', 'across a reload');
  await a.p.press('#message-input', 'Enter');
  await friendButton(b, 'Alice').locator('.badge', { hasText: '1' }).waitFor();
  const key = `imd.outbox.${alice.id}`;
  const kept = JSON.parse(await a.p.evaluate((k) => localStorage.getItem(k), key));
  assert.equal(kept.length, 1);
  assert.equal(kept[0].text, 'across a reload');

  a.hold.acks = false;
  await a.p.reload();
  await login(a.p, server.base, alice.account, alice.password);
  await friendButton(a.p, 'Bob').click();
  await bubble(a.p, 'across a reload').locator('.status.delivered').waitFor();
  assert.equal(await bubble(a.p, 'across a reload').count(), 1);
  const tries = a.sends.filter((f) => f.payload === 'across a reload');
  assert.equal(tries.length, 2);
  assert.equal(tries[1].cid, kept[0].cid);
  await a.p.waitForFunction((k) => localStorage.getItem(k) === '[]', key);
  await friendButton(b, 'Alice').click();
  assert.deepEqual(await texts(b), ['across a reload']);
  await a.p.context().close();
  await b.context().close();
  assert.deepEqual(errors, []);
});

test('a read mark goes out only for a chat in view: not from a hidden tab, not from another chat', async () => {
  const [bob, alice, carol] = await friends('Bob', 'Alice', 'Carol');
  for (const u of [alice, bob, carol]) await u.wire.close();
  const a = await page(alice);
  const b = await newPage(browser, errors);
  const bSent = await recordFrames(b);
  await login(b, server.base, bob.account, bob.password);
  await friendButton(a, 'Bob').click();
  await friendButton(b, 'Alice').click();
  const reads = async () => (await bSent()).filter((f) => f.type === 'read');

  await setHidden(b, true);
  await a.fill('#message-input', 'while hidden');
  await a.press('#message-input', 'Enter');
  await friendButton(b, 'Alice').locator('.badge', { hasText: '1' }).waitFor();
  await bubble(a, 'while hidden').locator('.status.delivered').waitFor();
  assert.deepEqual(await reads(), [], 'no read mark from a hidden tab');

  await setHidden(b, false);
  await bubble(a, 'while hidden').locator('.status.read').waitFor();
  assert.deepEqual((await reads()).map((f) => [f.with, f.seq]), [[alice.id, 1]]);
  assert.equal(await friendButton(b, 'Alice').locator('.badge').count(), 0);

  await friendButton(b, 'Carol').click();
  await a.fill('#message-input', 'while elsewhere');
  await a.press('#message-input', 'Enter');
  await friendButton(b, 'Alice').locator('.badge', { hasText: '1' }).waitFor();
  await bubble(a, 'while elsewhere').locator('.status.delivered').waitFor();
  assert.equal((await reads()).length, 1, 'no read mark while another chat is open');

  await friendButton(b, 'Alice').click();
  await bubble(a, 'while elsewhere').locator('.status.read').waitFor();
  assert.deepEqual((await reads()).at(-1), { type: 'read', with: alice.id, seq: 2 });
  await a.context().close();
  await b.context().close();
  assert.deepEqual(errors, []);
});

test('a reload shows the conversation again, with the ticks it had', async () => {
  const { alice, bob, a, b } = await pairOnPages();
  await friendButton(a, 'Bob').click();
  await friendButton(b, 'Alice').click();
  await a.fill('#message-input', 'how are you?');
  await a.press('#message-input', 'Enter');
  await bubble(b, 'how are you?').waitFor();
  await b.fill('#message-input', 'fine, thanks');
  await b.press('#message-input', 'Enter');
  await bubble(a, 'fine, thanks').waitFor();
  await bubble(a, 'how are you?').locator('.status.read').waitFor();
  await setHidden(b, true);
  await a.fill('#message-input', 'see you');
  await a.press('#message-input', 'Enter');
  await bubble(a, 'see you').locator('.status.delivered').waitFor();

  await a.reload();
  await login(a, server.base, alice.account, alice.password);
  await friendButton(a, 'Bob').click();
  await bubble(a, 'see you').waitFor();
  assert.deepEqual(await texts(a), ['how are you?', 'fine, thanks', 'see you']);
  await bubble(a, 'how are you?').locator('.status.read').waitFor();
  assert.equal(await bubble(a, 'see you').locator('.status.read').count(), 0);
  await bubble(a, 'see you').locator('.status.delivered').waitFor();
  assert.equal(await bubble(a, 'fine, thanks').locator('.status').count(), 0, 'not mine: no tick');
  await shot(a, 'ticks-after-reload');

  await b.reload();
  await login(b, server.base, bob.account, bob.password);
  await friendButton(b, 'Alice').locator('.badge', { hasText: '1' }).waitFor();
  await friendButton(b, 'Alice').click();
  await bubble(b, 'see you').waitFor();
  assert.deepEqual(await texts(b), ['how are you?', 'fine, thanks', 'see you']);
  await bubble(b, 'fine, thanks').locator('.status.read').waitFor();
  await bubble(a, 'see you').locator('.status.read').waitFor();
  await a.context().close();
  await b.context().close();
  assert.deepEqual(errors, []);
});

test('another account logging in on the same page sees none of the last one\'s conversations', async () => {
  const [bob, alice, carol] = await friends('Bob', 'Alice', 'Carol');
  await carol.wire.send(bob.id, ['Carol 1', 'Carol 2']);
  for (const u of [alice, bob, carol]) await u.wire.close();
  const a = await page(alice);
  await friendButton(a, 'Bob').click();
  await a.fill('#message-input', 'for Bob only');
  await a.press('#message-input', 'Enter');
  await bubble(a, 'for Bob only').locator('.status.sent').waitFor();

  // Alice logs in elsewhere: this page is signed out, and Carol uses it.
  const elsewhere = await wire(alice);
  await a.waitForSelector('#auth-message:has-text("logged in somewhere else")');
  await login(a, server.base, carol.account, carol.password);
  await friendButton(a, 'Bob').click();
  await a.fill('#message-input', 'Carol here');
  await a.press('#message-input', 'Enter');
  await bubble(a, 'Carol here').locator('.status.sent').waitFor();
  assert.deepEqual(await texts(a), ['Carol 1', 'Carol 2', 'Carol here']);
  await elsewhere.close();
  await a.context().close();
  assert.deepEqual(errors, []);
});
