// The login WebSocket: credentials in the first frame, JSON heartbeats, acks matched
// to sends by their id, and reconnection with backoff after a dropped connection. The
// backoff stays short (10 s at most) because the page also retries at once when it
// becomes visible or the network comes back, and the user can ask for it.
// Credentials live in this object only (memory), never in any storage.

import { loginUrl } from './api.js';

const HEARTBEAT_MS = 30_000;
const BACKOFF_MS = [1000, 2000, 4000, 8000, 10000];

export class Session extends EventTarget {
  #ws = null;
  #creds = null;
  #seq = 0;
  #pending = new Map();
  #heartbeat = 0;
  #retry = 0;
  #retryTimer = 0;
  #stopped = false;
  #loggedIn = false;
  auth = null;

  /** True while logged in over a live socket: only then can anything reach the server. */
  get online() {
    return this.#loggedIn && this.#ws !== null && this.#ws.readyState === WebSocket.OPEN;
  }

  /** The account given at login (the protocol never sends it back). */
  get account() {
    return this.#creds ? this.#creds.account : '';
  }

  /** Logs in; resolves with the login reply, rejects with the failure code. */
  start(account, password) {
    this.#creds = { account, password };
    this.#stopped = false;
    this.#retry = 0;
    return this.#connect();
  }

  #connect() {
    return new Promise((resolve, reject) => {
      this.#emit('state', 'connecting');
      const ws = new WebSocket(loginUrl());
      this.#ws = ws;
      let settled = false;
      ws.onopen = () => ws.send(JSON.stringify(this.#creds));
      ws.onmessage = (ev) => {
        let msg;
        try {
          msg = JSON.parse(ev.data);
        } catch {
          return;
        }
        if (!settled) {
          settled = true;
          if (msg.code === 200 && msg.token) {
            this.auth = { id: msg.profile.id, token: msg.token };
            this.#loggedIn = true;
            this.#retry = 0;
            this.#startHeartbeat();
            this.#emit('state', 'online');
            this.#emit('login', msg);
            resolve(msg);
          } else {
            this.#stopped = true;
            reject(msg.code);
          }
          return;
        }
        this.#dispatch(msg);
      };
      ws.onclose = () => {
        this.#stopHeartbeat();
        this.#failPending();
        if (this.#ws !== ws) return;
        this.#ws = null;
        this.#loggedIn = false;
        if (!settled) {
          settled = true;
          if (this.#stopped) return;
          // Never reached the server: try again later, the caller sees it as offline.
          reject(0);
        }
        if (this.#stopped) {
          this.#emit('state', 'closed');
          return;
        }
        this.#emit('state', 'offline');
        this.#scheduleReconnect();
      };
    });
  }

  #scheduleReconnect() {
    const delay = BACKOFF_MS[Math.min(this.#retry, BACKOFF_MS.length - 1)];
    this.#retry += 1;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => this.#reconnect(), delay);
    this.#emit('retry', delay);
  }

  #reconnect() {
    if (this.#stopped) return;
    this.#connect().catch((code) => {
      if (code !== 0) this.#emit('failed', code);
    });
  }

  /** Tries again at once when disconnected (a click, the page shown, the network back). */
  reconnectNow() {
    if (this.#stopped || !this.#creds || this.#ws !== null) return;
    clearTimeout(this.#retryTimer);
    this.#reconnect();
  }

  #dispatch(msg) {
    if (typeof msg.from === 'string' && typeof msg.payload === 'string') {
      this.#emit('receive', msg);
    } else if (typeof msg.type === 'string') {
      // Replies to heartbeat, read and typing frames: nothing waits for them, and a
      // typing notice over its budget (524) is simply not shown to the friend.
    } else if (msg.code === 513) {
      this.#stopped = true;
      this.#emit('replaced', msg);
    } else if (typeof msg.id === 'string' && this.#pending.has(msg.id)
      && !(msg.code >= 300 && msg.code < 400)) {
      const sent = this.#pending.get(msg.id);
      this.#pending.delete(msg.id);
      this.#emit('ack', {
        ...sent, code: msg.code, seq: msg.seq, ts: msg.ts,
      });
    } else if (typeof msg.code === 'number') {
      this.#emit('push', msg);
    }
  }

  /**
   * Sends a message; returns its dialogue id. The outcome arrives as an 'ack' event,
   * with code 0 when the connection went first (then it may never have arrived).
   * `cid` names the message across retries: a server that keeps history (docs/protocol.md
   * §10.2) stores a resent message once even when the first try's ack was lost; other
   * servers ignore the field.
   */
  send(toFriend, payload, cid) {
    this.#seq += 1;
    const id = `${Date.now().toString(36)}-${this.#seq}`;
    const sent = { id, toFriend, payload, cid };
    if (!this.online) {
      queueMicrotask(() => this.#emit('ack', { ...sent, code: 0 }));
      return id;
    }
    this.#pending.set(id, sent);
    this.#ws.send(JSON.stringify(sent));
    return id;
  }

  /** Moves my read mark of the conversation with `friend` (§10.3); false when offline. */
  read(friend, seq) {
    return this.#frame({ type: 'read', with: friend, seq });
  }

  /** Tells `friend` I am typing (§10.3); false when offline. */
  typing(friend) {
    return this.#frame({ type: 'typing', to: friend });
  }

  #frame(frame) {
    if (!this.online) return false;
    this.#ws.send(JSON.stringify(frame));
    return true;
  }

  #failPending() {
    for (const sent of this.#pending.values()) this.#emit('ack', { ...sent, code: 0 });
    this.#pending.clear();
  }

  #startHeartbeat() {
    this.#stopHeartbeat();
    this.#heartbeat = setInterval(() => {
      if (this.#ws && this.#ws.readyState === WebSocket.OPEN) {
        this.#ws.send('{"type":"heartbeat"}');
      }
    }, HEARTBEAT_MS);
  }

  #stopHeartbeat() {
    clearInterval(this.#heartbeat);
  }

  /** After a password change, reconnections must use the new one. */
  setPassword(password) {
    if (this.#creds) this.#creds = { ...this.#creds, password };
  }

  /** Ends the session for good (after logoff or erase); forgets the credentials. */
  stop() {
    this.#stopped = true;
    this.#creds = null;
    clearTimeout(this.#retryTimer);
    this.#stopHeartbeat();
    if (this.#ws) this.#ws.close(1000);
    this.#ws = null;
    this.#loggedIn = false;
    this.auth = null;
    this.#emit('state', 'closed');
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
