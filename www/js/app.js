// The chat app: views, state and the wiring between the UI and the protocol.
// Untrusted text only ever goes through textContent; pictures only as data:image URLs.

import { api } from './api.js';
import { sentence } from './codes.js';
import { Session } from './session.js';

const PICTURE_LIMIT = 262144; // bytes of the base64 data URL (PROTOCOL.md §9)
const $ = (id) => document.getElementById(id);

const session = new Session();
const state = {
  me: null,
  friends: new Map(), // id -> { entry, unread, messages: [] }
  requests: new Map(), // requester id -> entry
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
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
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

function showAuth(which, message = '', good = false) {
  $('app').hidden = true;
  $('auth').hidden = false;
  $('login-form').hidden = which !== 'login';
  $('register-form').hidden = which !== 'register';
  const m = $('auth-message');
  m.textContent = message;
  m.classList.toggle('good', good);
  (which === 'login' ? $('login-account') : $('reg-account')).focus();
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
  const reply = await api.register(fields);
  if (reply.code !== 200) {
    m.textContent = reply.code === 0 ? 'The server cannot be reached.' : sentence(reply.code);
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
  const m = $('auth-message');
  m.classList.remove('good');
  if (!account.trim() || !password.trim()) {
    m.textContent = sentence(505);
    return;
  }
  m.textContent = 'Logging in…';
  try {
    await session.start(account, password);
    $('login-password').value = '';
  } catch (code) {
    m.textContent = code === 0 ? 'The server cannot be reached.' : sentence(code);
  }
});

// ---------- session events ----------

session.addEventListener('login', (ev) => {
  const reply = ev.detail;
  state.me = reply.profile;
  const previous = state.friends;
  state.friends = new Map();
  for (const f of reply.friends || []) {
    const old = previous.get(f.id);
    state.friends.set(f.id, { entry: f, unread: old ? old.unread : 0, messages: old ? old.messages : [] });
  }
  state.requests = new Map((reply.requests || []).map((r) => [r.id, r]));
  if (state.current && !state.friends.has(state.current)) state.current = null;
  $('auth').hidden = true;
  $('app').hidden = false;
  $('auth-message').textContent = '';
  renderMe();
  renderRequests();
  renderFriends();
  renderChat();
});

session.addEventListener('state', (ev) => {
  const s = $('me-state');
  const online = ev.detail === 'online';
  s.textContent = online ? 'online' : ev.detail === 'connecting' ? 'connecting…' : 'offline — reconnecting';
  s.classList.toggle('offline', !online);
});

session.addEventListener('replaced', () => {
  session.stop();
  showAuth('login', sentence(513));
});

session.addEventListener('failed', (ev) => {
  session.stop();
  showAuth('login', sentence(ev.detail));
});

session.addEventListener('receive', (ev) => {
  const m = ev.detail;
  const friend = state.friends.get(m.from);
  if (!friend) return;
  friend.messages.push({ id: m.id, mine: false, text: m.payload, ts: m.ts || Date.now() });
  if (state.current !== m.from || document.hidden) friend.unread += 1;
  renderFriends();
  if (state.current === m.from) renderChat();
});

session.addEventListener('ack', (ev) => {
  const { id, toFriend, code } = ev.detail;
  const friend = state.friends.get(toFriend);
  const msg = friend && friend.messages.find((x) => x.mine && x.id === id);
  if (!msg) return;
  msg.code = code;
  if (state.current === toFriend) renderChat();
});

session.addEventListener('push', (ev) => {
  const p = ev.detail;
  const friend = state.friends.get(p.id);
  switch (p.code) {
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
        state.friends.set(p.friend.id, { entry: p.friend, unread: 0, messages: [] });
        state.requests.delete(p.friend.id);
        toast(`${p.friend.name} is now your friend.`);
        renderFriends();
        renderRequests();
      }
      break;
    case 304:
      if (friend) {
        state.friends.delete(p.id);
        toast(`${friend.entry.name} is no longer your friend.`);
        if (state.current === p.id) state.current = null;
        renderFriends();
        renderChat();
      }
      break;
    case 305:
      toast(sentence(305));
      break;
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

// ---------- rendering ----------

function renderMe() {
  $('me-name').textContent = state.me.name;
  $('me-avatar').src = avatarSrc(state.me.picture, state.me.name);
}

function renderFriends() {
  const list = $('friends');
  list.replaceChildren();
  const friends = [...state.friends.values()].sort((a, b) => a.entry.name.localeCompare(b.entry.name));
  for (const f of friends) {
    const e = f.entry;
    const status = e.online ? 'online' : 'offline';
    const button = el('button', {
      type: 'button',
      class: 'friend',
      'data-id': e.id,
      'aria-current': String(state.current === e.id),
      'aria-label': `${e.name}, ${status}${f.unread ? `, ${f.unread} unread` : ''}`,
      onclick: () => openChat(e.id),
    },
    avatar(e.picture, e.name),
    el('span', { class: 'who' }, el('span', { text: e.name }), el('span', { class: 'sign', text: e.sign })),
    f.unread ? el('span', { class: 'badge', text: String(f.unread) }) : null,
    el('span', { class: `dot ${status}`, title: status }));
    list.append(el('li', {}, button));
  }
  $('no-friends').hidden = friends.length > 0;
}

function renderRequests() {
  const list = $('requests');
  list.replaceChildren();
  for (const r of state.requests.values()) {
    const alias = el('input', { 'aria-label': `Name for ${r.name}`, maxlength: '64' });
    alias.value = r.name;
    const accept = el('button', { type: 'button', class: 'primary', text: 'Accept', onclick: () => acceptRequest(r, alias.value) });
    const decline = el('button', { type: 'button', text: 'Decline', onclick: () => declineRequest(r) });
    list.append(el('li', { class: 'item request', 'data-id': r.id },
      el('div', { class: 'head' }, el('strong', { text: r.name })),
      r.note ? el('p', { class: 'note', text: r.note }) : null,
      alias,
      el('div', { class: 'actions' }, accept, decline)));
  }
  $('no-requests').hidden = state.requests.size > 0;
}

function statusText(msg) {
  if (msg.code === undefined) return ['sending…', 'sending'];
  if (msg.code === 200) return ['delivered', 'delivered'];
  if (msg.code === 202) return ['stored for when your friend logs in', 'stored'];
  if (msg.code === 0) return ['not delivered: connection lost', 'failed'];
  return [`not delivered: ${sentence(msg.code)}`, 'failed'];
}

function renderChat() {
  const friend = state.current && state.friends.get(state.current);
  $('app').classList.toggle('chat-open', Boolean(friend));
  $('composer').hidden = !friend;
  $('remove-friend').hidden = !friend;
  $('remove-friend').textContent = 'Remove friend';
  $('remove-friend').dataset.confirm = '';
  const list = $('messages');
  list.replaceChildren();
  if (!friend) {
    $('chat-title').textContent = 'Choose a friend';
    $('chat-avatar').hidden = true;
    return;
  }
  const e = friend.entry;
  $('chat-title').textContent = `${e.name}${e.online ? '' : ' (offline)'}`;
  $('chat-avatar').hidden = false;
  $('chat-avatar').src = avatarSrc(e.picture, e.name);
  for (const m of friend.messages) {
    const meta = el('div', { class: 'meta' }, el('time', { text: time(m.ts) }));
    if (m.mine) {
      const [text, cls] = statusText(m);
      meta.append(el('span', { class: `status ${cls}`, text }));
    }
    list.append(el('li', { class: `bubble ${m.mine ? 'mine' : 'theirs'}`, 'data-id': m.id },
      el('p', { class: 'text', text: m.text }), meta));
  }
  list.scrollTop = list.scrollHeight;
}

// ---------- actions ----------

function openChat(id) {
  state.current = id;
  const f = state.friends.get(id);
  if (f) f.unread = 0;
  renderFriends();
  renderChat();
  $('message-input').focus();
}

$('back').addEventListener('click', () => {
  state.current = null;
  renderFriends();
  renderChat();
});

function sendCurrent() {
  const input = $('message-input');
  const text = input.value;
  if (!state.current || !text.trim()) return;
  const friend = state.friends.get(state.current);
  const id = session.send(state.current, text);
  friend.messages.push({ id, mine: true, text, ts: Date.now() });
  input.value = '';
  renderChat();
}

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
    state.current = null;
    renderFriends();
    renderChat();
    toast('Friend removed.');
  } else {
    toast(sentence(reply.code));
  }
});

async function acceptRequest(r, alias) {
  const reply = await api.add(session.auth, r.id, alias);
  if (reply.code === 200) {
    state.requests.delete(r.id);
    const list = await api.list(session.auth);
    if (list.code === 200) {
      for (const f of list.friends || []) {
        if (!state.friends.has(f.id)) state.friends.set(f.id, { entry: f, unread: 0, messages: [] });
      }
    }
    renderRequests();
    renderFriends();
    toast(`${alias.trim() || r.name} is now your friend.`);
  } else {
    if (reply.code === 525 || reply.code === 522) state.requests.delete(r.id);
    renderRequests();
    toast(sentence(reply.code));
  }
}

async function declineRequest(r) {
  const reply = await api.decline(session.auth, r.id);
  state.requests.delete(r.id);
  renderRequests();
  toast(reply.code === 200 ? `Declined ${r.name}'s request.` : sentence(reply.code));
}

$('search-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const name = $('search-name').value;
  const list = $('found');
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
    const note = el('input', { 'aria-label': `Note to ${u.name}`, placeholder: 'Say hello (optional)', maxlength: '256' });
    const ask = el('button', {
      type: 'button',
      class: 'primary',
      text: isFriend ? 'Friends' : 'Add friend',
      onclick: async () => {
        const r = await api.request(session.auth, u.id, note.value);
        if (r.code === 200) {
          ask.textContent = 'Request sent';
          ask.disabled = true;
          toast(`Friend request sent to ${u.name}.`);
        } else {
          toast(sentence(r.code));
        }
      },
    });
    if (isFriend) ask.disabled = true;
    list.append(el('li', { class: 'item found', 'data-id': u.id },
      el('div', { class: 'head' }, avatar(u.picture, u.name), el('strong', { text: u.name })),
      u.sign ? el('p', { class: 'note', text: u.sign }) : null,
      isFriend ? null : note,
      el('div', { class: 'actions' }, ask)));
  }
});

$('logoff').addEventListener('click', async () => {
  const auth = session.auth;
  session.stop();
  if (auth) await api.logoff(auth);
  state.friends = new Map();
  state.requests = new Map();
  state.current = null;
  $('found').replaceChildren();
  showAuth('login', 'You are logged off.', true);
});

// ---------- profile ----------

const dialog = $('profile-dialog');

$('edit-profile').addEventListener('click', () => {
  const me = state.me;
  $('pf-name').value = me.name;
  $('pf-sex').value = me.sex;
  $('pf-birthday').value = me.birthday;
  $('pf-sign').value = me.sign;
  $('pf-mail').value = '';
  $('pf-picture').value = '';
  $('pf-old').value = '';
  $('pf-new').value = '';
  $('profile-message').textContent = '';
  dialog.showModal();
});

$('profile-cancel').addEventListener('click', () => dialog.close());

$('profile-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const msg = $('profile-message');
  const fields = {
    name: $('pf-name').value,
    sex: $('pf-sex').value,
    birthday: $('pf-birthday').value,
    sign: $('pf-sign').value,
    mail: $('pf-mail').value,
  };
  try {
    const picture = await readPicture($('pf-picture'));
    if (picture) fields.picture = picture;
  } catch (e) {
    msg.textContent = e.message;
    return;
  }
  if ($('pf-old').value || $('pf-new').value) {
    fields.password = $('pf-old').value;
    fields.new_password = $('pf-new').value;
  }
  const reply = await api.updateProfile(session.auth, fields);
  if (reply.code !== 200) {
    msg.textContent = sentence(reply.code);
    return;
  }
  if (fields.new_password) session.setPassword(fields.new_password);
  for (const k of ['name', 'sex', 'birthday', 'sign', 'picture']) {
    if (fields[k] && fields[k].trim()) state.me[k] = fields[k].trim();
  }
  renderMe();
  dialog.close();
  toast('Profile saved.');
});

showAuth('login');
