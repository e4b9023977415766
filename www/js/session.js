// The login WebSocket: credentials in the first frame, JSON heartbeats, acks matched
// to sends by their id, and reconnection with backoff after a dropped connection. The
// backoff stays short (10 s at most) because the page also retries at once when it
// becomes visible or the network comes back, and the user can ask for it.
// A password lives in this object only (memory), never in any storage, and only until
// the server gives a device token (docs/protocol.md §11.2): reconnections then use the
// token, which the app keeps so that a reload needs no password either.

import { loginUrl } from './api.js';

const HEARTBEAT_MS = 30_000;
const BACKOFF_MS = [1000, 2000, 4000, 8000, 10000];
const DEVICE_TOKEN = /^[0-9a-f]{64}$/;

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
  #viaDevice = false;
  auth = null;

  /** True while logged in over a live socket: only then can anything reach the server. */
  get online() {
    return this.#loggedIn && this.#ws !== null && this.#ws.readyState === WebSocket.OPEN;
  }

  /** The account given at login (the protocol never sends it back). */
  get account() {
    return this.#creds ? this.#creds.account : '';
  }

  /** Whether the last login attempt used a device token rather than a password. */
  get byDevice() {
    return this.#viaDevice;
  }

  /**
   * Logs in with a password; `remember` asks for a device token (§11.2), announced by a
   * 'device' event. Resolves with the login reply, rejects with the failure code.
   */
  start(account, password, remember = false) {
    return this.#begin({ account, password, remember });
  }

  /** Logs in with a device token kept from an earlier login: no password (§11.2). */
  resume(account, deviceToken) {
    return this.#begin({ account, deviceToken });
  }

  #begin(creds) {
    // A retry still pending, or a socket still open, belongs to the last attempt.
    clearTimeout(this.#retryTimer);
    this.#stopHeartbeat();
    const old = this.#ws;
    this.#ws = null;
    this.#loggedIn = false;
    if (old) this.#release(old);
    this.#creds = creds;
    this.#stopped = false;
    this.#retry = 0;
    return this.#connect();
  }

  /** The first frame: the device token when there is one, else the password. */
  #loginFrame() {
    const c = this.#creds;
    this.#viaDevice = Boolean(c.deviceToken);
    if (c.deviceToken) return { account: c.account, device_token: c.deviceToken };
    const frame = { account: c.account, password: c.password };
    if (c.remember) frame.remember = true;
    return frame;
  }

  /** The login reply's device token replaces the password in memory. */
  #keepDevice(msg) {
    if (this.#viaDevice || !this.#creds.remember) return;
    if (typeof msg.device_token !== 'string' || !DEVICE_TOKEN.test(msg.device_token)) return;
    this.#creds = { account: this.#creds.account, deviceToken: msg.device_token };
    this.#emit('device', { account: this.#creds.account, token: msg.device_token });
  }

  /** A device token answered 505: expired or revoked, so it is dropped for good. */
  #dropDevice() {
    const { account, deviceToken } = this.#creds;
    this.#creds = { account };
    this.#emit('device', { account, token: null, old: deviceToken });
  }

  /**
   * Opens a login socket. `handover`, a socket still logged in, is closed once this one
   * has its answer: until then the person stays online (its late frames are ignored,
   * and a 513 it may get from this very login too).
   */
  #connect(handover = null) {
    return new Promise((resolve, reject) => {
      if (!handover) this.#emit('state', 'connecting');
      const ws = new WebSocket(loginUrl());
      this.#ws = ws;
      let settled = false;
      ws.onopen = () => {
        if (this.#ws === ws) ws.send(JSON.stringify(this.#loginFrame()));
      };
      ws.onmessage = (ev) => {
        if (this.#ws !== ws) return;
        let msg;
        try {
          msg = JSON.parse(ev.data);
        } catch {
          return;
        }
        if (!settled) {
          settled = true;
          if (handover) this.#release(handover);
          if (msg.code === 200 && msg.token) {
            this.auth = { id: msg.profile.id, token: msg.token };
            this.#loggedIn = true;
            this.#retry = 0;
            this.#keepDevice(msg);
            this.#startHeartbeat();
            this.#emit('state', 'online');
            this.#emit('login', msg);
            resolve(msg);
          } else {
            this.#stopped = true;
            if (this.#viaDevice && msg.code === 505) this.#dropDevice();
            reject(msg.code);
          }
          return;
        }
        this.#dispatch(msg);
      };
      ws.onclose = () => {
        // A socket already replaced (stop, a new login, a handover) had its sends failed
        // then, and leaves the new one's heartbeat and sends alone.
        if (this.#ws !== ws) return;
        this.#stopHeartbeat();
        this.#failPending();
        this.#ws = null;
        this.#loggedIn = false;
        if (!settled) {
          settled = true;
          if (handover) this.#release(handover);
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

  /**
   * After a password change in a remembered session: the change revoked this device's
   * token (§11.2), so a new login with the new password asks for another, and takes
   * over from the current socket without going offline.
   */
  renew() {
    if (!this.online || !this.#creds || !this.#creds.password) return;
    this.#creds = { ...this.#creds, remember: true };
    // Until the new login answers, sends wait (queued) rather than reach a socket that
    // has not logged in yet.
    this.#loggedIn = false;
    this.#connect(this.#ws).catch((code) => {
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

  /**
   * Closes a socket no longer current. What was sent on it without an answer fails now
   * (code 0), to go again with its cid on the next login.
   */
  #release(ws) {
    ws.close(1000);
    this.#failPending();
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

  /**
   * After a password change, reconnections must use the new one. The change revoked
   * every device token of the account (§11.2), so a remembered session asks for a new
   * one at its next login.
   */
  setPassword(password) {
    if (!this.#creds) return;
    const { account, deviceToken, remember } = this.#creds;
    this.#creds = { account, password, remember: remember || Boolean(deviceToken) };
    if (deviceToken) this.#emit('device', { account, token: null, old: deviceToken });
  }

  /**
   * The server is about to close the socket (a logoff on the HTTP side): that close
   * ends the session, it is not a dropped connection to log in again after.
   */
  expectClose() {
    this.#stopped = true;
    clearTimeout(this.#retryTimer);
  }

  /** Ends the session for good (after logoff or erase); forgets the credentials. */
  stop() {
    this.#stopped = true;
    this.#creds = null;
    clearTimeout(this.#retryTimer);
    this.#stopHeartbeat();
    const ws = this.#ws;
    this.#ws = null;
    if (ws) this.#release(ws);
    this.#loggedIn = false;
    this.auth = null;
    this.#emit('state', 'closed');
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
