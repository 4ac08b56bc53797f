// Proves the catalogue is consistent: each entry is listed under its own name, every request has
// a deadline and a version, and lookups of names from a peer cannot reach inherited properties.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requestCatalogue, requestDefinition, streamCatalogue, streamDefinition } from './catalogue.ts';

test('entries are listed under their own names, with a deadline and a first version', () => {
  for (const [name, def] of Object.entries(requestCatalogue)) {
    assert.equal(def.name, name);
    assert.ok(def.timeoutMs > 0);
    assert.match(def.since, /^\d+\.\d+\.\d+$/);
  }
  for (const [name, def] of Object.entries(streamCatalogue)) assert.equal(def.name, name);
});

test('lookups by a peer-chosen name find only catalogue entries', () => {
  assert.equal(requestDefinition('ping')?.name, 'ping');
  for (const name of ['__proto__', 'constructor', 'toString', 'nope']) {
    assert.equal(requestDefinition(name), undefined);
    assert.equal(streamDefinition(name), undefined);
  }
});
