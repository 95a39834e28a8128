import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { escapeLabelValue, labelPairs } from '../../src/metrics/labelText.js';

describe('labelText', () => {
  it('escapes backslash, double quote and line feed as the text format requires, nothing else', () => {
    assert.equal(escapeLabelValue('plain-value_1.2'), 'plain-value_1.2');
    assert.equal(escapeLabelValue('a\\b"c\nd'), 'a\\\\b\\"c\\nd');
    assert.equal(escapeLabelValue('tab\tand ünïcode'), 'tab\tand ünïcode');
  });

  it('renders label pairs in the given order, escaped', () => {
    const names = ['a', 'b', 'c'];
    const values = ['x', 'q"uo\\te\nnl', ''];
    const text = labelPairs(names, values);
    assert.equal(text, 'a="x",b="q\\"uo\\\\te\\nnl",c=""');
    assert.equal(labelPairs([], []), '');
  });
});
