// What this browser keeps across a reload, in localStorage:
// - the remembered login (docs/protocol.md §11.2): the account and its device token, one
//   per browser, shared by its tabs; never a password;
// - the outbox: my messages the server has not acknowledged, keyed by their cid, so a
//   reload or a lost connection resends them with the same cid (docs/protocol.md §10.2:
//   the server then stores each once); an entry goes as soon as its ack arrives;
// - the delivered marks seen in push 306, which /im/messages does not repeat, so the
//   ticks after a reload say what they said before it.
// Storage that is full or off only means these last as long as the page.

function read(key, fallback) {
  try {
    const value = JSON.parse(localStorage.getItem(key) || 'null');
    return value === null ? fallback : value;
  } catch {
    return fallback;
  }
}

function write(key, value) {
  try {
    localStorage.setItem(key, JSON.stringify(value));
  } catch {
    // Full or off: kept in the page only.
  }
}

const LOGIN_KEY = 'imd.login';
const outboxKey = (me) => `imd.outbox.${me}`;
const deliveredKey = (me) => `imd.delivered.${me}`;

/** The remembered login, { account, token }, or null. */
export function rememberedLogin() {
  const login = read(LOGIN_KEY, null);
  return login && typeof login.account === 'string' && login.account
    && typeof login.token === 'string' && /^[0-9a-f]{64}$/.test(login.token) ? login : null;
}

export function keepLogin(account, token) {
  write(LOGIN_KEY, { account, token });
}

export function forgetLogin() {
  try {
    localStorage.removeItem(LOGIN_KEY);
  } catch {
    // Nothing kept, nothing to remove.
  }
}

/** My unacknowledged messages, oldest first: [{ cid, to, text, ts }]. */
export function outbox(me) {
  const list = read(outboxKey(me), []);
  if (!Array.isArray(list)) return [];
  return list.filter((m) => m && typeof m.cid === 'string' && typeof m.to === 'string'
    && typeof m.text === 'string' && Number.isFinite(m.ts));
}

export function keepUnsent(me, item) {
  const list = outbox(me).filter((m) => m.cid !== item.cid);
  list.push(item);
  write(outboxKey(me), list);
}

export function dropUnsent(me, cid) {
  const list = outbox(me);
  const kept = list.filter((m) => m.cid !== cid);
  if (kept.length !== list.length) write(outboxKey(me), kept);
}

/** Friend id -> the highest seq a 306 said they got. */
export function deliveredMarks(me) {
  const marks = read(deliveredKey(me), {});
  return typeof marks === 'object' && !Array.isArray(marks) ? marks : {};
}

export function keepDelivered(me, friend, seq) {
  const marks = deliveredMarks(me);
  if ((marks[friend] || 0) >= seq) return;
  marks[friend] = seq;
  write(deliveredKey(me), marks);
}

/** Forgets what was kept about one friend: the conversation is gone (§10.5). */
export function forgetFriend(me, friend) {
  const list = outbox(me);
  const kept = list.filter((m) => m.to !== friend);
  if (kept.length !== list.length) write(outboxKey(me), kept);
  const marks = deliveredMarks(me);
  if (friend in marks) {
    delete marks[friend];
    write(deliveredKey(me), marks);
  }
}

/** Forgets everything kept for a user (their account is gone). */
export function forgetKept(me) {
  try {
    localStorage.removeItem(outboxKey(me));
    localStorage.removeItem(deliveredKey(me));
  } catch {
    // Nothing kept, nothing to remove.
  }
}
