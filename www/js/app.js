// The chat app: views, state and the wiring between the UI and the protocol.
// Untrusted text only ever goes through textContent (links are built as DOM nodes,
// never as HTML); pictures only as data:image URLs. Nothing here sets a style
// attribute: the page runs under a Content-Security-Policy without 'unsafe-inline'.

import { api } from './api.js';
import { sentence } from './codes.js';
import { Conversation } from './conversation.js';
import {
  deliveredMarks, dropUnsent, forgetFriend, forgetKept, forgetLogin, keepDelivered, keepLogin,
  keepUnsent, outbox, rememberedLogin,
} from './kept.js';
import { Session } from './session.js';

const PICTURE_LIMIT = 262144; // bytes of the base64 data URL (docs/protocol.md §9)
const MIN_PASSWORD = 8; // for new passwords only: old accounts may have shorter ones
const TITLE = 'imd chat';
const PAGE = 50; // messages per history page shown when a chat opens or scrolls up
const GAP_PAGE = 200; // the most /im/messages gives at once (docs/protocol.md §10.4)
// A typing notice goes out at most every 3 s while I type (the server allows 2 a
// second, §10.3) and shows for 5 s after the last one, so it stays on while the friend
// types and goes soon after they stop.
const TYPING_EVERY_MS = 3000;
const TYPING_SHOWN_MS = 5000;
// Field limits of docs/protocol.md §9, in characters, with the name the UI gives each field.
const LIMITS = {
  account: [64, 'account'],
  password: [1024, 'password'],
  new_password: [1024, 'new password'],
  mail: [254, 'e-mail address'],
  name: [64, 'display name'],
  sex: [16, 'sex'],
  birthday: [32, 'birthday'],
  sign: [256, 'signature'],
  note: [256, 'note'],
};
const EXPIRED = 'You were signed out here: this browser\'s saved sign-in has expired or was '
  + 'revoked. Please log in again.';
const OFFLINE = 'You are offline: cannot reach the server, so nothing was changed. '
  + 'Try again once reconnected.';
const $ = (id) => document.getElementById(id);

const session = new Session();
const state = {
  me: null,
  friends: new Map(), // id -> { entry, chat: Conversation }
  requests: new Map(), // requester id -> entry
  outgoing: new Map(), // target id -> { id, name, note, state: 'pending' | 'declined' }
  current: null,
};

// ---------- small DOM helpers ----------

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

function avatarSrc(picture, name) {
  if (typeof picture === 'string' && /^data:image\/(png|jpe?g|gif|webp);base64,[A-Za-z0-9+/=]+$/.test(picture)) {
    return picture;
  }
  const letter = (name || '?').trim().charAt(0).toUpperCase() || '?';
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 40 40"><rect width="40" height="40" fill="#8fa3c7"/>`
    + `<text x="20" y="26" font-size="18" text-anchor="middle" fill="#fff" font-family="sans-serif">${
      letter.replace(/[<>&"']/g, '?')}</text></svg>`;
  return `data:image/svg+xml,${encodeURIComponent(svg)}`;
}

function avatar(picture, name, cls = 'avatar') {
  return el('img', { class: cls, alt: '', src: avatarSrc(picture, name) });
}

/** `img` when it already shows this picture, else a new avatar. */
function keptAvatar(img, picture, name) {
  return img && img.getAttribute('src') === avatarSrc(picture, name) ? img : avatar(picture, name);
}

/** Text with its http(s) links as anchors, built node by node (never parsed as HTML). */
function linkified(text) {
  const frag = document.createDocumentFragment();
  const re = /\bhttps?:\/\/[^\s<>"']+/gi;
  let last = 0;
  for (const m of text.matchAll(re)) {
    // Punctuation that ends a sentence is not part of the link.
    const url = m[0].replace(/[.,;:!?)\]}]+$/, '');
    let href;
    try {
      href = new URL(url);
    } catch {
      continue;
    }
    if (href.protocol !== 'http:' && href.protocol !== 'https:') continue;
    frag.append(text.slice(last, m.index));
    frag.append(el('a', {
      href: href.href, target: '_blank', rel: 'noopener noreferrer', text: url,
    }));
    last = m.index + url.length;
  }
  frag.append(text.slice(last));
  return frag;
}

/** A short form of a user id: the protocol gives search results and requests no account. */
function ident(id) {
  return el('span', { class: 'ident', title: `user id ${id}`, text: `#${String(id).slice(0, 8)}` });
}

/** The first field over its limit, named for a person; '' when none is. */
function tooLong(fields) {
  for (const [key, value] of Object.entries(fields)) {
    const limit = LIMITS[key];
    if (limit && typeof value === 'string' && [...value.trim()].length > limit[0]) {
      return `The ${limit[1]} is too long: at most ${limit[0]} characters.`;
    }
  }
  return '';
}

/** The sentence for a failed reply; a 527 names the field that is too long. */
function failure(code, fields = {}) {
  if (code === 527) return tooLong(fields) || sentence(527);
  return sentence(code);
}

/** Whether an action may go ahead; says why not while disconnected. */
function canAct(show = toast) {
  if (session.online) return true;
  show(OFFLINE);
  return false;
}

let toastTimer = 0;
function toast(text) {
  const t = $('toast');
  t.textContent = text;
  t.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove('show'), 4000);
}

function time(ms) {
  const d = new Date(ms);
  const clock = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  // History reaches back past today: older messages say which day.
  return d.toDateString() === new Date().toDateString() ? clock : `${d.toLocaleDateString()} ${clock}`;
}

function readPicture(input) {
  return new Promise((resolve, reject) => {
    const file = input.files && input.files[0];
    if (!file) return resolve('');
    if (!file.type.startsWith('image/')) return reject(new Error('Please choose an image file.'));
    const reader = new FileReader();
    reader.onload = () => {
      const url = String(reader.result);
      if (url.length > PICTURE_LIMIT) reject(new Error('That picture is too large: choose one under 180 KB.'));
      else resolve(url);
    };
    reader.onerror = () => reject(new Error('The picture could not be read.'));
    reader.readAsDataURL(file);
  });
}

// ---------- authentication screens ----------

/** The login form, the registration form, or neither ('resume': a remembered login). */
function showAuth(which, message = '', good = false) {
  $('app').hidden = true;
  $('auth').hidden = false;
  $('login-form').hidden = which !== 'login';
  $('register-form').hidden = which !== 'register';
  const m = $('auth-message');
  m.textContent = message;
  m.classList.toggle('good', good);
  // A known account (a refused saved sign-in, a 513) leaves only the password to type.
  if (which === 'login') ($('login-account').value ? $('login-password') : $('login-account')).focus();
  else if (which === 'register') $('reg-account').focus();
}

/** Why a login did not succeed; a refused device token is not a wrong password. */
function loginFailure(code) {
  return code === 505 && session.byDevice ? EXPIRED : sentence(code);
}

/** Accounts compare ASCII case-insensitively (docs/protocol.md §1). */
function sameAccount(a, b) {
  const fold = (x) => (typeof x === 'string' ? x.trim().replace(/[A-Z]/g, (c) => c.toLowerCase()) : null);
  return fold(a) !== null && fold(a) === fold(b);
}

/** Logs in by the device token this browser keeps, if any (§11.2): no password asked. */
async function resumeKept() {
  const kept = rememberedLogin();
  if (!kept) {
    showAuth('login');
    return;
  }
  $('login-account').value = kept.account;
  showAuth('resume', 'Signing you in…', true);
  try {
    await session.resume(kept.account, kept.token);
  } catch (code) {
    // Unreachable (0): the session keeps trying by itself and the app opens when it
    // gets through; meanwhile the person may log in by hand.
    showAuth('login', code === 0 ? 'Cannot reach the server. Trying again…' : loginFailure(code));
  }
}

$('show-register').addEventListener('click', () => showAuth('register'));
$('show-login').addEventListener('click', () => showAuth('login'));

$('reg-picture').addEventListener('change', async () => {
  const preview = $('reg-preview');
  try {
    const url = await readPicture($('reg-picture'));
    preview.hidden = !url;
    if (url) preview.src = url;
    $('auth-message').textContent = '';
  } catch (e) {
    $('reg-picture').value = '';
    preview.hidden = true;
    $('auth-message').textContent = e.message;
  }
});

$('register-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const m = $('auth-message');
  m.classList.remove('good');
  const missing = [['reg-account', 'an account name'], ['reg-password', 'a password'],
    ['reg-mail', 'an e-mail address']].find(([id]) => !$(id).value.trim());
  if (missing) {
    m.textContent = `Please enter ${missing[1]}: it is required.`;
    $(missing[0]).focus();
    return;
  }
  if ($('reg-password').value.length < MIN_PASSWORD) {
    m.textContent = `The password needs at least ${MIN_PASSWORD} characters.`;
    $('reg-password').focus();
    return;
  }
  let picture = '';
  try {
    picture = await readPicture($('reg-picture'));
  } catch (e) {
    m.textContent = e.message;
    return;
  }
  const fields = {
    account: $('reg-account').value,
    password: $('reg-password').value,
    mail: $('reg-mail').value,
    name: $('reg-name').value,
    sex: $('reg-sex').value,
    birthday: $('reg-birthday').value,
    sign: $('reg-sign').value,
    picture,
  };
  const long = tooLong(fields);
  if (long) {
    m.textContent = long;
    return;
  }
  const reply = await api.register(fields);
  if (reply.code !== 200) {
    m.textContent = failure(reply.code, fields);
    return;
  }
  $('login-account').value = fields.account.trim();
  $('register-form').reset();
  $('reg-preview').hidden = true;
  showAuth('login', 'Account created. You can log in now.', true);
  $('login-password').focus();
});

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const account = $('login-account').value;
  const password = $('login-password').value;
  const remember = $('login-remember').checked;
  const m = $('auth-message');
  m.classList.remove('good');
  if (!account.trim() || !password.trim()) {
    m.textContent = 'Enter your account and password.';
    return;
  }
  m.textContent = 'Logging in…';
  // Asked while the person is acting, so the browser shows the question.
  if ('Notification' in window && Notification.permission === 'default') {
    Notification.requestPermission().catch(() => {});
  }
  // Unchecked, this browser keeps nothing: a token from an earlier login goes too.
  if (!remember) forgetLogin();
  try {
    await session.start(account, password, remember);
    $('login-password').value = '';
  } catch (code) {
    m.textContent = sentence(code);
  }
});

// ---------- session events ----------

session.addEventListener('login', (ev) => {
  const reply = ev.detail;
  // A reconnect keeps what the page holds; another account logging in here (after a
  // 513, say) must not see the last one's conversations.
  const previous = state.me && state.me.id === reply.profile.id ? state.friends : new Map();
  if (!previous.size) state.current = null;
  state.me = reply.profile;
  state.friends = new Map();
  const delivered = deliveredMarks(state.me.id);
  for (const f of reply.friends || []) {
    const old = previous.get(f.id);
    const chat = old ? old.chat : new Conversation(f);
    if (old) chat.adopt(f);
    chat.deliveredSeq = Math.max(chat.deliveredSeq, Math.min(Number(delivered[f.id]) || 0, chat.lastSeq));
    state.friends.set(f.id, { entry: f, chat });
  }
  state.requests = new Map((reply.requests || []).map((r) => [r.id, r]));
  state.outgoing = loadOutgoing();
  for (const id of state.friends.keys()) state.outgoing.delete(id);
  saveOutgoing();
  if (state.current && !state.friends.has(state.current)) state.current = null;
  $('auth').hidden = true;
  $('app').hidden = false;
  $('auth-message').textContent = '';
  renderMe();
  renderRequests();
  renderOutgoing();
  restoreUnsent();
  flushUnsent();
  for (const f of state.friends.values()) fillGap(f);
  const open = state.current && state.friends.get(state.current);
  if (open) {
    loadNewest(open);
    markRead(open);
  }
  renderFriends();
  renderChat();
});

let retryAt = 0;
let retryTick = 0;

function showRetry() {
  const left = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
  $('conn-detail').textContent = left > 0
    ? `Trying again in ${left} s. Messages and changes cannot be sent until then.`
    : 'Reconnecting…';
}

session.addEventListener('state', (ev) => {
  const s = $('me-state');
  const online = ev.detail === 'online';
  s.textContent = online ? 'online' : ev.detail === 'connecting' ? 'connecting…' : 'offline';
  s.classList.toggle('offline', !online);
  if (ev.detail === 'closed') {
    $('conn-banner').hidden = true;
    clearInterval(retryTick);
    return;
  }
  if (online) {
    $('conn-banner').hidden = true;
    clearInterval(retryTick);
  } else if (state.me) {
    $('conn-banner').hidden = false;
    if (ev.detail === 'connecting') $('conn-detail').textContent = 'Reconnecting…';
  }
  if (ev.detail === 'offline') {
    // Presence is unknown while we cannot hear the server.
    renderFriends();
    renderChat();
  }
});

session.addEventListener('retry', (ev) => {
  retryAt = Date.now() + ev.detail;
  // For people nothing; for tests and tools, the wait and how many there were.
  const banner = $('conn-banner');
  banner.dataset.retryMs = String(ev.detail);
  banner.dataset.attempt = String(Number(banner.dataset.attempt || 0) + 1);
  showRetry();
  clearInterval(retryTick);
  retryTick = setInterval(showRetry, 1000);
});

$('reconnect-now').addEventListener('click', () => session.reconnectNow());
window.addEventListener('online', () => session.reconnectNow());
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState !== 'visible') return;
  session.reconnectNow();
  const f = state.current && state.friends.get(state.current);
  if (f) {
    markRead(f);
    renderFriends();
  }
});

session.addEventListener('replaced', () => {
  // No reconnection: that would replace the newer session in turn. The device token
  // stays, so a reload signs this browser in again when the person wants it.
  session.stop();
  showAuth('login', sentence(513));
});

session.addEventListener('failed', (ev) => {
  const why = loginFailure(ev.detail);
  session.stop();
  showAuth('login', why);
});

session.addEventListener('device', (ev) => {
  const { account, token, old } = ev.detail;
  if (token) {
    keepLogin(account.trim(), token);
    return;
  }
  // Another tab may have stored a newer token meanwhile: only this one goes.
  const kept = rememberedLogin();
  if (kept && kept.token === old) forgetLogin();
});

session.addEventListener('receive', (ev) => {
  const m = ev.detail;
  // A copy of my own message sent from another of my sessions names the friend in `to`
  // (docs/protocol.md §11.1).
  const mineElsewhere = m.from === state.me.id && typeof m.to === 'string';
  const friend = state.friends.get(mineElsewhere ? m.to : m.from);
  if (!friend) return;
  const chat = friend.chat;
  const { fresh, newest } = chat.take(stored(m));
  if (!fresh) return;
  if (!mineElsewhere) chat.typingUntil = 0;
  // A message at or below the login entry's last_seq (the login backlog) is already in
  // its `unread`.
  if (newest && !mineElsewhere) {
    chat.unread += 1;
    if (document.hidden) notify(friend, m);
  }
  if (!mineElsewhere && chatVisible(m.from)) $('chat-live').textContent = `${friend.entry.name}: ${m.payload.slice(0, 200)}`;
  markRead(friend);
  renderFriends();
  if (state.current === friend.entry.id) renderChat();
  fillGap(friend);
});

session.addEventListener('ack', (ev) => {
  const {
    toFriend, code, cid, seq, ts, id, payload,
  } = ev.detail;
  const friend = state.friends.get(toFriend);
  const msg = friend && friend.chat.unsent(cid);
  if (code === 200 || code === 202) dropUnsent(state.me.id, cid);
  if (!msg || msg.id !== id) {
    // Already placed by a history page, or an older try of a message sent again.
    if (friend && Number.isInteger(seq)) {
      friend.chat.take({ seq, cid, mine: true, from: state.me.id, text: payload, ts });
      fillGap(friend);
    }
    if (friend && state.current === toFriend) renderChat();
    return;
  }
  if ((code === 200 || code === 202) && Number.isInteger(seq)) {
    friend.chat.take({
      seq, cid, mine: true, from: state.me.id, text: payload, ts,
    }).msg.code = code;
    fillGap(friend);
  } else if (code === 200 || code === 202) {
    // A server without history (§6.1): the code is all there is.
    Object.assign(msg, { status: code === 200 ? 'delivered' : 'stored', code });
  } else if (code === 0) {
    // The connection went: it goes out again, same cid, after the next login.
    msg.status = 'queued';
  } else {
    dropUnsent(state.me.id, cid);
    Object.assign(msg, { status: 'failed', code });
  }
  if (state.current === toFriend) renderChat();
});

session.addEventListener('push', (ev) => {
  const p = ev.detail;
  const friend = state.friends.get(p.id);
  switch (p.code) {
    case 306:
      if (friend && Number.isInteger(p.seq)) {
        friend.chat.deliveredSeq = Math.max(friend.chat.deliveredSeq, p.seq);
        keepDelivered(state.me.id, p.id, p.seq);
        if (state.current === p.id) renderChat();
      }
      break;
    case 307:
      readMark(p);
      break;
    case 308:
      if (friend) {
        friend.chat.typingUntil = Date.now() + TYPING_SHOWN_MS;
        if (state.current === p.id) renderTyping();
      }
      break;
    case 300:
    case 302:
      if (friend) {
        friend.entry.online = p.code === 302;
        renderFriends();
        if (state.current === p.id) renderChat();
      }
      break;
    case 301:
      if (friend) {
        Object.assign(friend.entry, {
          name: p.name, picture: p.picture, sex: p.sex, birthday: p.birthday, sign: p.sign,
        });
        renderFriends();
        if (state.current === p.id) renderChat();
      }
      break;
    case 303:
      if (p.friend && p.friend.id) {
        state.friends.set(p.friend.id, { entry: p.friend, chat: new Conversation(p.friend) });
        state.requests.delete(p.friend.id);
        state.outgoing.delete(p.friend.id);
        saveOutgoing();
        renderOutgoing();
        toast(`${p.friend.name} is now your friend.`);
        renderFriends();
        renderRequests();
      }
      break;
    case 304:
      if (friend) {
        state.friends.delete(p.id);
        forgetFriend(state.me.id, p.id);
        toast(`${friend.entry.name} is no longer your friend.`);
        if (state.current === p.id) state.current = null;
        renderFriends();
        renderChat();
      }
      break;
    case 305: {
      const sent = state.outgoing.get(p.id);
      if (sent) {
        sent.state = 'declined';
        saveOutgoing();
        renderOutgoing();
        toast(`${sent.name} declined your friend request.`);
      } else {
        toast(sentence(305));
      }
      break;
    }
    case 520:
      if (p.request && p.request.id) {
        state.requests.set(p.request.id, p.request);
        toast(`${p.request.name} wants to be your friend.`);
        renderRequests();
      }
      break;
    default:
      if (!p.ok) toast(sentence(p.code));
  }
});

function notify(friend, m) {
  if (!('Notification' in window) || Notification.permission !== 'granted') return;
  try {
    const n = new Notification(friend.entry.name, { body: m.payload.slice(0, 200), tag: m.from });
    n.onclick = () => {
      window.focus();
      openChat(m.from);
      n.close();
    };
  } catch {
    // Some browsers only notify from a service worker: the title still counts.
  }
}

// ---------- kept conversations (docs/protocol.md §10) ----------

/** A receive frame or a history message as the conversation holds it. */
function stored(frame) {
  return {
    seq: frame.seq,
    cid: typeof frame.cid === 'string' ? frame.cid : undefined,
    id: frame.id,
    from: frame.from,
    mine: frame.from === state.me.id,
    text: frame.payload,
    ts: Number.isFinite(frame.ts) ? frame.ts : Date.now(),
  };
}

/** Whether the person can see this chat now: open, and the page shown. */
function chatVisible(id) {
  return state.current === id && document.visibilityState === 'visible' && !$('app').hidden;
}

/** Moves my read mark to the newest message, only while the chat is in view. */
function markRead(friend) {
  const chat = friend.chat;
  if (!chatVisible(friend.entry.id) || chat.unread === 0) return;
  if (chat.lastSeq > chat.readSeq) {
    // Offline, the count still clears here: the next login's entry brings it back if
    // the server did not hear, and this runs again then.
    if (session.read(friend.entry.id, chat.lastSeq)) chat.readSeq = chat.lastSeq;
  }
  chat.unread = 0;
}

/** Push 307: the friend read my messages, or I read theirs in another session. */
function readMark(p) {
  if (!state.me || !Number.isInteger(p.seq)) return;
  if (p.by === state.me.id) {
    const friend = state.friends.get(p.with);
    if (!friend) return;
    friend.chat.readTo(p.seq);
    renderFriends();
    return;
  }
  const friend = state.friends.get(p.by);
  if (!friend) return;
  friend.chat.peerReadSeq = Math.max(friend.chat.peerReadSeq, p.seq);
  if (state.current === p.by) renderChat();
}

/** My messages this browser kept unacknowledged (a reload), back in their chats. */
function restoreUnsent() {
  for (const item of outbox(state.me.id)) {
    const friend = state.friends.get(item.to);
    if (!friend) {
      dropUnsent(state.me.id, item.cid);
      continue;
    }
    const chat = friend.chat;
    const placed = chat.unsent(item.cid) || chat.ordered().some((m) => m.mine && m.cid === item.cid);
    if (!placed) chat.write(item.cid, item.text, item.ts);
  }
}

/** Sends everything written and not yet taken, oldest first, each with its cid. */
function flushUnsent() {
  const waiting = [];
  for (const friend of state.friends.values()) {
    for (const m of friend.chat.loose) {
      if (m.mine && m.status === 'queued') waiting.push([friend, m]);
    }
  }
  waiting.sort((a, b) => a[1].n - b[1].n);
  for (const [friend, m] of waiting) transmit(friend, m);
}

function transmit(friend, m) {
  if (!session.online) {
    m.status = 'queued';
    return;
  }
  m.status = 'sending';
  m.id = session.send(friend.entry.id, m.text, m.cid);
}

function historyMessages(reply) {
  return Array.isArray(reply.messages)
    ? reply.messages.filter((m) => m && Number.isInteger(m.seq) && typeof m.payload === 'string').map(stored)
    : [];
}

/** The newest page of a chat, the first time it opens. */
async function loadNewest(friend) {
  const chat = friend.chat;
  if (chat.loaded || chat.loading || !session.online) return;
  chat.loading = true;
  const reply = await api.messages(session.auth, friend.entry.id, { limit: PAGE });
  chat.loading = false;
  if (state.friends.get(friend.entry.id) !== friend) return;
  if (reply.code === 404) {
    // A server without history: only what arrives live.
    chat.loaded = true;
    return;
  }
  if (reply.code !== 200) return;
  chat.page(historyMessages(reply), reply);
  markRead(friend);
  renderFriends();
  if (state.current === friend.entry.id) renderChat({ toBottom: true });
  fillGap(friend);
}

/** The page before the oldest message shown (the person scrolled up). */
async function loadOlder(friend) {
  const chat = friend.chat;
  if (!chat.hasOlder() || chat.loadingOlder || !session.online) return;
  chat.loadingOlder = true;
  const reply = await api.messages(session.auth, friend.entry.id, { before: chat.oldest, limit: PAGE });
  chat.loadingOlder = false;
  if (state.friends.get(friend.entry.id) !== friend || reply.code !== 200) return;
  const older = historyMessages(reply);
  if (older.length === 0) chat.firstSeq = chat.oldest;
  chat.page(older, reply);
  if (state.current !== friend.entry.id) return;
  // A keyboard user who pressed "Load older messages" stays on it (or on the list once
  // there is nothing older), not thrown back to the top of the page.
  const pressed = document.activeElement && document.activeElement.closest('.older');
  renderChat();
  if (pressed) ($('messages').querySelector('.older button') || $('messages')).focus();
}

/**
 * Fetches what is missing between the messages held and the newest seq known (a frame
 * lost with a dropped connection, a login backlog cut short): seq has no gaps (§10.1),
 * so any gap here is something not yet seen.
 */
async function fillGap(friend) {
  const chat = friend.chat;
  if (chat.filling) return;
  chat.filling = true;
  try {
    for (;;) {
      const after = chat.gap();
      if (after < 0 || !session.online) break;
      const reply = await api.messages(session.auth, friend.entry.id, { after, limit: GAP_PAGE });
      if (reply.code !== 200 || state.friends.get(friend.entry.id) !== friend) break;
      const found = historyMessages(reply);
      // Retention may have deleted the start of the gap: the rest begins further on.
      if (found.length && found[0].seq > chat.tail + 1) chat.tail = found[0].seq - 1;
      if (found.length === 0) chat.tail = Math.max(chat.tail, Number(reply.last_seq) || 0);
      chat.page(found, reply);
      if (chat.tail <= after) break;
    }
  } finally {
    chat.filling = false;
  }
  if (state.current === friend.entry.id) renderChat();
}

let typingTimer = 0;

/** "… is typing" under the open chat while the friend's last notice is fresh. */
function renderTyping() {
  const friend = state.current && state.friends.get(state.current);
  const now = Date.now();
  const on = Boolean(friend) && friend.chat.typingUntil > now;
  const text = on ? `${friend.entry.name} is typing…` : '';
  if ($('typing').textContent !== text) $('typing').textContent = text;
  clearTimeout(typingTimer);
  if (on) typingTimer = setTimeout(renderTyping, friend.chat.typingUntil - now + 20);
}

// ---------- requests I sent: the server has no route for them, so they live here ----------

function outgoingKey() {
  return `imd.outgoing.${state.me.id}`;
}

function loadOutgoing() {
  try {
    const list = JSON.parse(localStorage.getItem(outgoingKey()) || '[]');
    return new Map(list
      .filter((r) => r && typeof r.id === 'string' && typeof r.name === 'string')
      .map((r) => [r.id, {
        id: r.id,
        name: r.name,
        note: typeof r.note === 'string' ? r.note : '',
        state: r.state === 'declined' ? 'declined' : 'pending',
      }]));
  } catch {
    return new Map();
  }
}

function saveOutgoing() {
  if (!state.me) return;
  try {
    localStorage.setItem(outgoingKey(), JSON.stringify([...state.outgoing.values()]));
  } catch {
    // Storage full or off: the list lasts as long as the page.
  }
}

// ---------- rendering ----------

function renderMe() {
  $('me-name').textContent = state.me.name;
  $('me-account').textContent = session.account;
  $('me-avatar').src = avatarSrc(state.me.picture, state.me.name);
}

function renderTitle() {
  let unread = 0;
  for (const f of state.friends.values()) unread += f.chat.unread;
  document.title = unread ? `(${unread}) ${TITLE}` : TITLE;
}

function renderFriends() {
  const list = $('friends');
  // The avatars already shown are kept: a new image for each render (presence comes
  // and goes often) would load and decode them all again.
  const shown = new Map([...list.querySelectorAll('.friend')].map((b) => [b.dataset.id, b.querySelector('img')]));
  list.replaceChildren();
  const friends = [...state.friends.values()].sort((a, b) => a.entry.name.localeCompare(b.entry.name));
  for (const f of friends) {
    const e = f.entry;
    const status = !session.online ? 'unknown' : e.online ? 'online' : 'offline';
    const button = el('button', {
      type: 'button',
      class: 'friend',
      'data-id': e.id,
      'aria-current': String(state.current === e.id),
      'aria-label': `${e.name}, ${status === 'unknown' ? 'presence unknown while you are offline' : status}${
        f.chat.unread ? `, ${f.chat.unread} unread` : ''}`,
      onclick: () => openChat(e.id),
    },
    keptAvatar(shown.get(e.id), e.picture, e.name),
    el('span', { class: 'who' }, el('span', { text: e.name }), el('span', { class: 'sign', text: e.sign })),
    f.chat.unread ? el('span', { class: 'badge', text: String(f.chat.unread) }) : null,
    el('span', { class: `dot ${status}`, title: status === 'unknown' ? 'unknown while you are offline' : status }));
    list.append(el('li', {}, button));
  }
  $('no-friends').hidden = friends.length > 0;
  renderTitle();
}

function renderRequests() {
  const list = $('requests');
  list.replaceChildren();
  for (const r of state.requests.values()) {
    const alias = el('input', { maxlength: '64', class: 'alias' });
    alias.value = r.name;
    const accept = el('button', { type: 'button', class: 'primary', text: 'Accept', onclick: () => acceptRequest(r, alias.value) });
    const decline = el('button', { type: 'button', text: 'Decline', onclick: () => declineRequest(r) });
    list.append(el('li', { class: 'item request', 'data-id': r.id },
      el('div', { class: 'head' }, el('strong', { class: 'name', text: r.name }), ident(r.id)),
      r.note ? el('p', { class: 'note', text: r.note }) : null,
      el('label', { class: 'field' }, 'Name in your friend list', alias),
      el('div', { class: 'actions' }, accept, decline)));
  }
  $('no-requests').hidden = state.requests.size > 0;
}

function renderOutgoing() {
  const list = $('outgoing');
  list.replaceChildren();
  for (const r of state.outgoing.values()) {
    const declined = r.state === 'declined';
    const dismiss = declined ? el('button', {
      type: 'button',
      text: 'Dismiss',
      onclick: () => {
        state.outgoing.delete(r.id);
        saveOutgoing();
        renderOutgoing();
      },
    }) : null;
    list.append(el('li', { class: `item sent ${r.state}`, 'data-id': r.id },
      el('div', { class: 'head' }, el('strong', { class: 'name', text: r.name }), ident(r.id)),
      r.note ? el('p', { class: 'note', text: r.note }) : null,
      el('div', { class: 'actions' },
        el('span', { class: 'state-text', text: declined ? `Declined by ${r.name}` : 'Pending' }),
        dismiss)));
  }
  $('outgoing-section').hidden = state.outgoing.size === 0;
}

/** What my message's line says, and its class: the ticks of docs/protocol.md §10. */
function statusText(chat, msg) {
  switch (msg.status) {
    case 'queued': return ['waiting: cannot reach the server, it goes out once reconnected', 'queued'];
    case 'sending': return ['sending…', 'sending'];
    case 'failed': return [`not sent: ${sentence(msg.code)}`, 'failed'];
    // A server without history: its 200 means handed over, its 202 stored.
    case 'delivered': return ['delivered', 'delivered'];
    case 'stored': return ['stored for when your friend logs in', 'stored'];
    default: break;
  }
  const tick = chat.tick(msg);
  if (tick === 'read') return ['✓✓ read', 'delivered read'];
  if (tick === 'delivered') return ['✓✓ delivered', 'delivered'];
  if (msg.code === 202) return ['✓ sent, delivered when your friend logs in', 'sent stored'];
  return ['✓ sent', 'sent'];
}

/**
 * Draws the open chat. It stays where the person scrolled (older pages come in above),
 * and follows the newest message when they were at the bottom or `toBottom` says so.
 */
function renderChat({ toBottom = false } = {}) {
  const friend = state.current && state.friends.get(state.current);
  $('app').classList.toggle('chat-open', Boolean(friend));
  $('composer').hidden = !friend;
  $('remove-friend').hidden = !friend;
  $('remove-friend').textContent = 'Remove friend';
  $('remove-friend').dataset.confirm = '';
  const list = $('messages');
  const fromBottom = list.scrollHeight - list.scrollTop;
  const atBottom = fromBottom - list.clientHeight < 40;
  list.replaceChildren();
  renderTyping();
  if (!friend) {
    $('chat-title').textContent = 'Choose a friend';
    $('chat-avatar').hidden = true;
    return;
  }
  const e = friend.entry;
  const chat = friend.chat;
  $('chat-title').textContent = `${e.name}${session.online && !e.online ? ' (offline)' : ''}`;
  $('chat-avatar').hidden = false;
  $('chat-avatar').src = avatarSrc(e.picture, e.name);
  if (chat.hasOlder()) {
    list.append(el('li', { class: 'older' }, el('button', {
      type: 'button',
      class: 'link',
      text: chat.loadingOlder ? 'Loading older messages…' : 'Load older messages',
      onclick: () => loadOlder(friend),
    })));
  }
  for (const m of chat.ordered()) {
    const meta = el('div', { class: 'meta' }, el('time', { text: time(m.ts) }));
    if (m.mine) {
      const [text, cls] = statusText(chat, m);
      // The ticks are for the eye; the words after them are what a screen reader says.
      const [, ticks, words] = /^(✓*)\s*(.*)$/.exec(text);
      meta.append(el('span', { class: `status ${cls}` },
        ticks ? el('span', { 'aria-hidden': 'true', text: `${ticks} ` }) : null, words));
      if (cls === 'failed') {
        meta.append(el('button', {
          type: 'button', class: 'link retry', text: 'Retry', onclick: () => retry(friend, m),
        }));
      }
    }
    const props = { class: `bubble ${m.mine ? 'mine' : 'theirs'}` };
    if (Number.isInteger(m.seq)) props['data-seq'] = String(m.seq);
    if (m.cid) props['data-cid'] = m.cid;
    list.append(el('li', props, el('p', { class: 'text' }, linkified(m.text)), meta));
  }
  list.scrollTop = toBottom || atBottom ? list.scrollHeight : list.scrollHeight - fromBottom;
}

$('messages').addEventListener('scroll', () => {
  const friend = state.current && state.friends.get(state.current);
  if (friend && $('messages').scrollTop < 60) loadOlder(friend);
});

// ---------- actions ----------

function openChat(id) {
  state.current = id;
  const f = state.friends.get(id);
  if (f) {
    markRead(f);
    loadNewest(f);
  }
  renderFriends();
  renderChat({ toBottom: true });
  $('message-input').focus();
}

$('back').addEventListener('click', () => {
  state.current = null;
  typingTo = '';
  renderFriends();
  renderChat();
});

function newCid() {
  // getRandomValues, not randomUUID: the page may be served over plain http on a LAN.
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => b.toString(16).padStart(2, '0')).join('');
}

function sendCurrent() {
  const input = $('message-input');
  const text = input.value;
  if (!state.current || !text.trim()) return;
  const friend = state.friends.get(state.current);
  const m = friend.chat.write(newCid(), text);
  keepUnsent(state.me.id, {
    cid: m.cid, to: state.current, text, ts: m.ts,
  });
  transmit(friend, m);
  input.value = '';
  typingSentAt = 0;
  renderChat({ toBottom: true });
}

function retry(friend, m) {
  if (!canAct()) return;
  // 529: the cid names another message on the server; this one needs its own.
  if (m.code === 529) m.cid = newCid();
  friend.chat.again(m);
  keepUnsent(state.me.id, {
    cid: m.cid, to: friend.entry.id, text: m.text, ts: m.ts,
  });
  transmit(friend, m);
  renderChat({ toBottom: true });
}

let typingSentAt = 0;
let typingTo = '';

$('message-input').addEventListener('input', () => {
  const to = state.current;
  if (!to || !$('message-input').value.trim()) return;
  const now = Date.now();
  if (to === typingTo && now - typingSentAt < TYPING_EVERY_MS) return;
  if (session.typing(to)) {
    typingTo = to;
    typingSentAt = now;
  }
});

$('composer').addEventListener('submit', (ev) => {
  ev.preventDefault();
  sendCurrent();
});

$('message-input').addEventListener('keydown', (ev) => {
  if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
    ev.preventDefault();
    sendCurrent();
  }
});

$('remove-friend').addEventListener('click', async () => {
  const button = $('remove-friend');
  const id = state.current;
  if (!id) return;
  if (!canAct()) return;
  if (button.dataset.confirm !== 'yes') {
    button.dataset.confirm = 'yes';
    button.textContent = 'Really remove?';
    button.classList.add('danger');
    return;
  }
  button.classList.remove('danger');
  const reply = await api.remove(session.auth, id);
  if (reply.code === 200 || reply.code === 512) {
    state.friends.delete(id);
    forgetFriend(state.me.id, id);
    state.current = null;
    renderFriends();
    renderChat();
    toast('Friend removed.');
  } else {
    toast(sentence(reply.code));
  }
});

async function acceptRequest(r, alias) {
  if (!canAct()) return;
  const reply = await api.add(session.auth, r.id, alias);
  if (reply.code === 200) {
    state.requests.delete(r.id);
    const list = await api.list(session.auth);
    if (list.code === 200) {
      for (const f of list.friends || []) {
        if (!state.friends.has(f.id)) state.friends.set(f.id, { entry: f, chat: new Conversation(f) });
      }
    }
    renderRequests();
    renderFriends();
    toast(`${alias.trim() || r.name} is now your friend.`);
  } else {
    if (reply.code === 525 || reply.code === 522) state.requests.delete(r.id);
    renderRequests();
    toast(failure(reply.code, { name: alias }));
  }
}

async function declineRequest(r) {
  if (!canAct()) return;
  const reply = await api.decline(session.auth, r.id);
  // Only what the server did shows: a request it never heard about stays.
  if (reply.code === 200 || reply.code === 525) {
    state.requests.delete(r.id);
    renderRequests();
  }
  toast(reply.code === 200 ? `Declined ${r.name}'s request.` : sentence(reply.code));
}

$('search-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const name = $('search-name').value;
  const list = $('found');
  if (!canAct()) return;
  if (!name.trim()) {
    toast(sentence(516));
    return;
  }
  list.replaceChildren();
  const reply = await api.found(session.auth, name);
  if (reply.code !== 200) {
    toast(sentence(reply.code));
    return;
  }
  const found = reply.found || [];
  if (found.length === 0) {
    list.append(el('li', { class: 'empty', text: 'Nobody found.' }));
    return;
  }
  for (const u of found) {
    const isFriend = state.friends.has(u.id);
    const note = el('input', { placeholder: 'Say hello (optional)', maxlength: '256' });
    const pending = state.outgoing.has(u.id) && state.outgoing.get(u.id).state === 'pending';
    const ask = el('button', {
      type: 'button',
      class: 'primary',
      text: isFriend ? 'Friends' : pending ? 'Ask again' : 'Add friend',
      onclick: async () => {
        if (!canAct()) return;
        const r = await api.request(session.auth, u.id, note.value);
        if (r.code === 200) {
          ask.textContent = 'Request sent';
          ask.disabled = true;
          if (!state.friends.has(u.id)) {
            state.outgoing.set(u.id, { id: u.id, name: u.name, note: note.value.trim(), state: 'pending' });
            saveOutgoing();
            renderOutgoing();
          }
          toast(`Friend request sent to ${u.name}.`);
        } else {
          if (r.code === 522) {
            state.outgoing.delete(u.id);
            saveOutgoing();
            renderOutgoing();
          }
          toast(failure(r.code, { note: note.value }));
        }
      },
    });
    if (isFriend) ask.disabled = true;
    list.append(el('li', { class: 'item found', 'data-id': u.id },
      el('div', { class: 'head' }, avatar(u.picture, u.name), el('strong', { class: 'name', text: u.name }), ident(u.id)),
      u.sign ? el('p', { class: 'note', text: u.sign }) : null,
      isFriend ? null : el('label', { class: 'field' }, 'Note (optional)', note),
      el('div', { class: 'actions' }, ask)));
  }
});

/** Drops everything the last session showed and returns to the login form. */
function forgetSession(why) {
  state.friends = new Map();
  state.requests = new Map();
  state.outgoing = new Map();
  state.current = null;
  state.me = null;
  document.title = TITLE;
  $('found').replaceChildren();
  showAuth('login', why, true);
}

// Tabs of one browser share its remembered login, so they log off together: a person
// who logs off on a shared computer leaves no tab signed in.
const tabs = 'BroadcastChannel' in window ? new BroadcastChannel('imd') : null;

/** Ends this session, forgets this browser's device (§11.2) and shows the login form. */
async function logoff(why) {
  const auth = session.auth;
  const account = session.account;
  const kept = rememberedLogin();
  if (kept && sameAccount(kept.account, account)) forgetLogin();
  // The logoff goes while the session lives: once its socket is closed the server no
  // longer knows its token, and the device would stay remembered there.
  session.expectClose();
  if (auth) await api.logoff(auth, true);
  session.stop();
  forgetSession(why);
}

$('logoff').addEventListener('click', async () => {
  const { account } = session;
  await logoff('You are logged off.');
  if (tabs) tabs.postMessage({ type: 'logoff', account });
});

if (tabs) {
  tabs.onmessage = (ev) => {
    const m = ev.data;
    if (m && m.type === 'logoff' && state.me && sameAccount(m.account, session.account)) {
      logoff('You logged off in another tab.');
    }
  };
}

// ---------- profile ----------

const dialog = $('profile-dialog');
const TEXT_FIELDS = ['name', 'sex', 'birthday', 'sign'];

$('edit-profile').addEventListener('click', () => {
  const me = state.me;
  $('pf-name').value = me.name;
  $('pf-sex').value = me.sex;
  $('pf-birthday').value = me.birthday;
  $('pf-sign').value = me.sign;
  $('pf-mail').value = me.mail || '';
  $('pf-picture').value = '';
  $('pf-clear-picture').checked = false;
  $('pf-old').value = '';
  $('pf-new').value = '';
  $('profile-message').textContent = '';
  $('erase-box').hidden = true;
  $('erase-open').hidden = false;
  $('erase-password').value = '';
  $('erase-message').textContent = '';
  dialog.showModal();
});

$('profile-cancel').addEventListener('click', () => dialog.close());

$('profile-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const msg = $('profile-message');
  if (!canAct((t) => { msg.textContent = t; })) return;
  const me = state.me;
  // Only what changed is sent; a field emptied by the person is cleared (§3.4 ext),
  // since an empty field alone means "unchanged" on the wire.
  const fields = {};
  const clear = [];
  const input = {
    name: $('pf-name').value, sex: $('pf-sex').value, birthday: $('pf-birthday').value, sign: $('pf-sign').value,
  };
  for (const k of TEXT_FIELDS) {
    const v = input[k].trim();
    if (v && v !== me[k]) fields[k] = v;
    else if (!v && me[k]) clear.push(k);
  }
  const mail = $('pf-mail').value.trim();
  if (!mail) {
    msg.textContent = 'Your e-mail address cannot be empty: it is used if you forget your password.';
    return;
  }
  if (mail !== me.mail) fields.mail = mail;
  if ($('pf-clear-picture').checked) {
    clear.push('picture');
  } else {
    try {
      const picture = await readPicture($('pf-picture'));
      if (picture) fields.picture = picture;
    } catch (e) {
      msg.textContent = e.message;
      return;
    }
  }
  if ($('pf-old').value || $('pf-new').value) {
    if (!$('pf-old').value || !$('pf-new').value) {
      msg.textContent = 'To change your password, enter the current one and the new one.';
      return;
    }
    if ($('pf-new').value.length < MIN_PASSWORD) {
      msg.textContent = `The new password needs at least ${MIN_PASSWORD} characters.`;
      return;
    }
    fields.password = $('pf-old').value;
    fields.new_password = $('pf-new').value;
  }
  const long = tooLong(fields);
  if (long) {
    msg.textContent = long;
    return;
  }
  if (clear.length) fields.clear = clear;
  const reply = await api.updateProfile(session.auth, fields);
  if (reply.code !== 200) {
    msg.textContent = reply.code === 505 ? 'The current password is wrong.' : failure(reply.code, fields);
    return;
  }
  if (fields.new_password) {
    // The server revoked this browser's device token with the old password: a remembered
    // login gets a new one, so a reload still needs no password.
    const kept = rememberedLogin();
    session.setPassword(fields.new_password);
    if (kept && sameAccount(kept.account, session.account)) session.renew();
  }
  for (const k of [...TEXT_FIELDS, 'picture', 'mail']) {
    if (fields[k]) me[k] = fields[k];
  }
  for (const k of clear) me[k] = k === 'name' ? session.account : '';
  renderMe();
  dialog.close();
  toast('Profile saved.');
});

$('erase-open').addEventListener('click', () => {
  $('erase-open').hidden = true;
  $('erase-box').hidden = false;
  $('erase-password').focus();
});

$('erase-confirm').addEventListener('click', async () => {
  const msg = $('erase-message');
  if (!canAct((t) => { msg.textContent = t; })) return;
  const password = $('erase-password').value;
  if (!password.trim()) {
    msg.textContent = 'Enter your password to delete your account.';
    return;
  }
  const reply = await api.erase(session.auth, password);
  if (reply.code !== 200) {
    msg.textContent = reply.code === 505 ? 'That password is wrong.' : sentence(reply.code);
    return;
  }
  const me = state.me;
  const kept = rememberedLogin();
  if (kept && sameAccount(kept.account, session.account)) forgetLogin();
  session.stop();
  try {
    localStorage.removeItem(`imd.outgoing.${me.id}`);
  } catch {
    // Nothing kept, nothing to remove.
  }
  forgetKept(me.id);
  dialog.close();
  forgetSession('Your account was deleted.');
});

resumeKept();
