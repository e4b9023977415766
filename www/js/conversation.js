// One conversation with a friend as this page knows it (docs/protocol.md §10): the
// messages seen so far keyed by their `seq`, my messages the server has not yet taken,
// and the marks that decide each tick and the unread count. Pure state: no DOM, no
// network, so every path in (login entry, receive frame, ack, history page, push)
// merges the same way and a message is never shown twice.

let order = 0;

export class Conversation {
  constructor(entry) {
    this.bySeq = new Map(); // seq -> message the server holds
    this.loose = []; // messages without a seq: mine not yet taken, or a server without history
    this.lastSeq = 0; // the newest seq known to exist
    this.readSeq = 0; // my read mark
    this.peerReadSeq = 0; // the friend's read mark
    this.deliveredSeq = 0; // the friend's delivered mark, from push 306
    this.unread = 0;
    this.loaded = false; // the newest page was fetched
    this.oldest = 0; // lowest seq of the run fetched in order (0: none)
    this.tail = 0; // every seq from `oldest` to here is held
    this.firstSeq = 0; // oldest seq the server still keeps
    this.typingUntil = 0;
    this.adopt(entry);
  }

  /** A friend entry's marks (login, friends/list, push 303): the server's word wins. */
  adopt(entry) {
    if (!Number.isInteger(entry.last_seq)) {
      this.unread = Number.isInteger(entry.unread) ? entry.unread : this.unread;
      return;
    }
    if (entry.last_seq < this.lastSeq) {
      // Removed and befriended again while we were away: a new conversation from seq 1.
      this.bySeq.clear();
      this.loose = this.loose.filter((m) => m.mine && m.seq === undefined);
      this.loaded = false;
      this.oldest = 0;
      this.tail = 0;
      this.peerReadSeq = 0;
      this.deliveredSeq = 0;
    }
    this.lastSeq = entry.last_seq;
    if (Number.isInteger(entry.read_seq)) this.readSeq = entry.read_seq;
    if (Number.isInteger(entry.unread)) this.unread = entry.unread;
  }

  /** Marks from a history reply (§10.4). */
  marks(reply) {
    if (Number.isInteger(reply.last_seq)) this.lastSeq = Math.max(this.lastSeq, reply.last_seq);
    if (Number.isInteger(reply.first_seq)) this.firstSeq = reply.first_seq;
    if (Number.isInteger(reply.read_seq)) this.readSeq = Math.max(this.readSeq, reply.read_seq);
    if (Number.isInteger(reply.peer_read_seq)) {
      this.peerReadSeq = Math.max(this.peerReadSeq, reply.peer_read_seq);
    }
  }

  /**
   * My read mark moved to `seq`, here or in another of my sessions (push 307): unread
   * are the friend's messages above it. Exact when every seq above the mark is held
   * here, else at most the seqs above it.
   */
  readTo(seq) {
    this.readSeq = Math.max(this.readSeq, seq);
    if (this.readSeq >= this.lastSeq) {
      this.unread = 0;
      return;
    }
    let theirs = 0;
    for (let s = this.readSeq + 1; s <= this.lastSeq; s += 1) {
      const m = this.bySeq.get(s);
      if (!m) {
        this.unread = Math.min(this.unread, this.lastSeq - this.readSeq);
        return;
      }
      if (!m.mine) theirs += 1;
    }
    this.unread = theirs;
  }

  /** My message, written here, before the server has it. */
  write(cid, text, ts = Date.now()) {
    const m = {
      cid, mine: true, text, ts, status: 'queued', n: order += 1,
    };
    this.loose.push(m);
    return m;
  }

  /** My failed message, written again: it goes to the end, as the newest. */
  again(m) {
    Object.assign(m, {
      status: 'queued', code: undefined, ts: Date.now(), n: order += 1,
    });
  }

  /** My message still without a seq, by its cid. */
  unsent(cid) {
    return this.loose.find((m) => m.mine && m.cid === cid && m.seq === undefined);
  }

  /**
   * A message the server holds (receive frame, history, or the ack of mine). Returns it,
   * whether it is new here (`fresh`) and whether its seq is above every seq known before
   * (`newest`: a login entry's `unread` already counts the others). The same seq, or my
   * own cid, merges into one.
   */
  take(m) {
    if (!Number.isInteger(m.seq)) {
      const loose = { ...m, n: order += 1 };
      this.loose.push(loose);
      return { msg: loose, fresh: true, newest: true };
    }
    let msg = this.bySeq.get(m.seq);
    const fresh = !msg;
    if (!msg && m.mine && m.cid) {
      msg = this.unsent(m.cid);
      if (msg) this.loose.splice(this.loose.indexOf(msg), 1);
    }
    if (msg) Object.assign(msg, { seq: m.seq, ts: m.ts || msg.ts });
    else msg = { ...m, n: order += 1 };
    if (msg.mine && msg.status !== 'sent') msg.status = 'sent';
    this.bySeq.set(m.seq, msg);
    const newest = m.seq > this.lastSeq;
    if (newest) this.lastSeq = m.seq;
    this.advance();
    return { msg, fresh, newest };
  }

  /** A history page (§10.4) fetched in order from `after`, or the newest one. */
  page(messages, reply) {
    this.marks(reply);
    if (messages.length && (!this.oldest || messages[0].seq < this.oldest)) {
      this.oldest = messages[0].seq;
    }
    if (!this.loaded) {
      this.loaded = true;
      this.tail = messages.length ? messages.at(-1).seq : reply.last_seq || 0;
      if (!this.oldest) this.oldest = this.tail + 1;
    }
    for (const m of messages) this.take(m);
    this.advance();
  }

  advance() {
    if (!this.loaded) return;
    while (this.bySeq.has(this.tail + 1)) this.tail += 1;
  }

  /** The seq after which messages are missing here, or -1 when none are. */
  gap() {
    return this.loaded && this.lastSeq > this.tail ? this.tail : -1;
  }

  /** Whether older messages than those shown are kept on the server. */
  hasOlder() {
    return this.loaded && this.oldest > Math.max(1, this.firstSeq);
  }

  /** Every message, oldest first: those with a seq in seq order, then the rest as written. */
  ordered() {
    const held = [...this.bySeq.values()].sort((a, b) => a.seq - b.seq);
    return held.concat([...this.loose].sort((a, b) => a.n - b.n));
  }

  /** The tick of my message: 'read', 'delivered' or 'sent' once it has a seq. */
  tick(m) {
    if (m.seq <= this.peerReadSeq) return 'read';
    if (m.seq <= this.deliveredSeq) return 'delivered';
    return 'sent';
  }
}
