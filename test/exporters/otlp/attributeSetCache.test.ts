import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AttributeSetCache } from '../../../src/exporters/otlp/encoding/AttributeSetCache.js';

describe('AttributeSetCache', () => {
  it('derives once per distinct set (same pairs, same order), for fresh objects', () => {
    let derived = 0;
    const cache = new AttributeSetCache((a) => ({ n: ++derived, keys: Object.keys(a).join(',') }));
    const a1 = cache.get({ 'source.k8s.pod.name': 'sleep-1', 'destination.k8s.pod.name': 'httpbin-1' });
    const a2 = cache.get({ 'source.k8s.pod.name': 'sleep-1', 'destination.k8s.pod.name': 'httpbin-1' });
    assert.equal(a2, a1, 'an equal set in a new object hits');
    assert.equal(derived, 1);
    const b = cache.get({ 'source.k8s.pod.name': 'sleep-1' });
    assert.notEqual(b, a1, 'a prefix of a cached set is its own set');
    const c = cache.get({ 'destination.k8s.pod.name': 'httpbin-1', 'source.k8s.pod.name': 'sleep-1' });
    assert.equal(c.keys, 'destination.k8s.pod.name,source.k8s.pod.name', 'another order is another set');
    assert.equal(cache.get({}), cache.get({}), 'the empty set is cached too');
    assert.equal(derived, 4);
    assert.equal(cache.size, 4);
  });

  it('derives a set holding a non-string value every time, without caching it', () => {
    let derived = 0;
    const cache = new AttributeSetCache(() => ++derived);
    const bad = { a: 'x', b: 7 } as unknown as Record<string, string>;
    assert.equal(cache.get(bad), 1);
    assert.equal(cache.get(bad), 2);
    assert.equal(cache.size, 0);
  });

  it('stays within its node bound: a full trie is dropped whole and refills', () => {
    let derived = 0;
    const cache = new AttributeSetCache(() => ++derived, 10);
    for (let i = 0; i < 25; i++) cache.get({ k: `v${i}` });
    assert.ok(cache.size <= 10, `cached sets: ${cache.size}`);
    assert.equal(derived, 25);
    const before = derived;
    cache.get({ k: 'v24' });
    assert.equal(derived, before, 'a set cached after the reset still hits');
  });
});
