// Proves channel tickets work once, expire after their TTL (30 s by default), and keep what they
// were bound to.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TICKET_TTL_MS, TicketBook } from './tickets.ts';

const grant = { userId: 'u1', hostId: 'h1', kind: 'echo', params: { mode: 'echo' } };

test('a ticket works once and carries its user, host, kind and params', () => {
  const book = new TicketBook();
  const { ticket } = book.issue(grant);
  const redeemed = book.redeem(ticket);
  assert.deepEqual({ ...redeemed, expiresAt: undefined }, { ...grant, expiresAt: undefined });
  assert.equal(book.redeem(ticket), null, 'a reused ticket is refused');
  assert.equal(book.redeem('not-a-ticket'), null);
  assert.equal(book.redeem(undefined), null);
});

test('an expired ticket is refused', () => {
  let now = 1_000_000;
  const book = new TicketBook({ now: () => now });
  const { ticket, expiresAt } = book.issue(grant);
  assert.equal(expiresAt.getTime(), 1_000_000 + TICKET_TTL_MS);
  now += TICKET_TTL_MS;
  assert.equal(book.redeem(ticket), null);
  // Expired tickets are pruned when the next one is issued.
  book.issue(grant);
  assert.equal(book.size, 1);
});

test('a ticket just within its 30 s still works', () => {
  let now = 0;
  const book = new TicketBook({ now: () => now });
  const { ticket } = book.issue(grant);
  now = TICKET_TTL_MS - 1;
  assert.equal(book.redeem(ticket)?.hostId, 'h1');
});

test('a book with its own TTL (KEEL_CHANNEL_TICKET_TTL_SECONDS) expires tickets after it', () => {
  let now = 0;
  const book = new TicketBook({ now: () => now, ttlMs: 2_000 });
  const { ticket, expiresAt } = book.issue(grant);
  assert.equal(expiresAt.getTime(), 2_000);
  const early = book.issue(grant).ticket;
  now = 1_999;
  assert.equal(book.redeem(early)?.hostId, 'h1');
  now = 2_000;
  assert.equal(book.redeem(ticket), null);
});
