// The conversation state of the web client (www/js/conversation.js) without a browser:
// how receive frames, acks, history pages and friend entries merge by seq and cid.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Conversation } from '../../www/js/conversation.js';

const theirs = (seq) => ({ seq, mine: false, text: `t${seq}`, ts: seq });

test('one message per seq, and my message joins its seq by cid from the ack or from history', () => {
  const c = new Conversation({ last_seq: 0, read_seq: 0, unread: 0 });
  const m = c.write('cid-1', 'hello');
  assert.equal(m.status, 'queued');
  // History brings my message before its ack does.
  c.page([theirs(1), { seq: 2, cid: 'cid-1', mine: true, text: 'hello', ts: 2 }], { last_seq: 2, first_seq: 1 });
  assert.equal(c.unsent('cid-1'), undefined);
  assert.equal(m.seq, 2);
  assert.equal(m.status, 'sent');
  // Then the ack and the same receive frame again change nothing.
  assert.equal(c.take({ seq: 2, cid: 'cid-1', mine: true, text: 'hello' }).fresh, false);
  assert.equal(c.take(theirs(1)).fresh, false);
  assert.deepEqual(c.ordered().map((x) => x.seq), [1, 2]);
});

test('a login backlog message is not newest (its entry counted it); a live one is', () => {
  const c = new Conversation({ last_seq: 5, read_seq: 3, unread: 2 });
  assert.deepEqual([c.take(theirs(4)).newest, c.take(theirs(5)).newest, c.take(theirs(6)).newest],
    [false, false, true]);
});

test('a gap shows once the newest page is held, and closes when the missing seq comes', () => {
  const c = new Conversation({ last_seq: 3, read_seq: 3, unread: 0 });
  c.take(theirs(7));
  assert.equal(c.gap(), -1, 'nothing to compare with before the chat was opened');
  c.page([theirs(2), theirs(3)], { last_seq: 3, first_seq: 1 });
  assert.equal(c.gap(), 3);
  c.page([theirs(4), theirs(5), theirs(6)], { last_seq: 7, first_seq: 1 });
  assert.equal(c.gap(), -1);
  assert.equal(c.tail, 7);
  assert.ok(c.hasOlder());
  c.page([theirs(1)], { last_seq: 7, first_seq: 1 });
  assert.equal(c.hasOlder(), false);
});

test('ticks follow the marks; a conversation begun again (removed, befriended) starts empty', () => {
  const c = new Conversation({ last_seq: 0, read_seq: 0, unread: 0 });
  c.page([1, 2, 3].map((seq) => ({ seq, mine: true, text: 'x', ts: seq })), { last_seq: 3, peer_read_seq: 1 });
  c.deliveredSeq = 2;
  assert.deepEqual(c.ordered().map((m) => c.tick(m)), ['read', 'delivered', 'sent']);
  const unsent = c.write('cid-9', 'still mine');
  c.adopt({ last_seq: 1, read_seq: 0, unread: 1 });
  assert.deepEqual(c.ordered(), [unsent]);
  assert.equal(c.loaded, false);
  assert.equal(c.tick({ seq: 1 }), 'sent');
});

test('a read mark set in another of my sessions leaves unread what lies above it', () => {
  const c = new Conversation({ last_seq: 0, read_seq: 0, unread: 0 });
  c.page([], { last_seq: 0 });
  for (const seq of [1, 2, 3]) c.take(theirs(seq));
  c.take({ seq: 4, mine: true, text: 'mine', ts: 4 });
  c.take(theirs(5));
  c.unread = 4;
  c.readTo(2);
  assert.equal(c.unread, 2, 'seq 3 and 5 are theirs and above the mark; 4 is mine');
  assert.equal(c.readSeq, 2);
  c.readTo(1);
  assert.equal(c.readSeq, 2, 'a mark never moves back');
  // Not every seq above the mark is held: the count can only shrink to what may be there.
  const d = new Conversation({ last_seq: 10, read_seq: 0, unread: 9 });
  d.readTo(7);
  assert.equal(d.unread, 3);
  d.readTo(10);
  assert.equal(d.unread, 0);
});
