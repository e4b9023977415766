// The wire protocol (docs/protocol.md) and nothing else: JSON over HTTP for accounts and
// friends, one WebSocket for the session. Authenticated calls are POSTs with a JSON
// body, so the token never appears in a URL.

const base = new URL('/im/', location.href);

async function call(path, body) {
  let reply;
  try {
    const res = await fetch(new URL(path, base), {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      cache: 'no-store',
    });
    reply = await res.json();
  } catch (e) {
    return { code: 0, message: 'network', ok: false };
  }
  if (typeof reply !== 'object' || reply === null || typeof reply.code !== 'number') {
    return { code: 500, message: 'bad reply', ok: false };
  }
  return reply;
}

export const api = {
  register: (fields) => call('register', fields),
  query: (account) => call('query', { account }),
  found: (auth, name) => call('friends/found', { ...auth, name }),
  request: (auth, to, note) => call('friends/request', { ...auth, to, note }),
  add: (auth, from, name) => call('friends/add', { ...auth, from, name }),
  decline: (auth, from) => call('friends/decline', { ...auth, from }),
  remove: (auth, to) => call('friends/remove', { ...auth, to }),
  list: (auth) => call('friends/list', auth),
  requests: (auth) => call('friends/requests', auth),
  updateProfile: (auth, fields) => call('profile/update', { ...auth, ...fields }),
  erase: (auth, password) => call('erase', { ...auth, password }),
  /** `forget` also revokes the device token this session logged in with (§11.2). */
  logoff: (auth, forget = false) => call('logoff', { ...auth, forget }),
  /** A page of a kept conversation (§10.4): `page` is { limit } with `after` or `before`. */
  messages: (auth, friend, page) => call('messages', { ...auth, with: friend, ...page }),
};

/** The login WebSocket URL: same host, ws: or wss: like the page. No credentials. */
export function loginUrl() {
  const url = new URL('/im/login', location.href);
  url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}
