/**
 * A bounded cache of something derived from an attribute set (its encoded
 * KeyValue fields), keyed by the set's content, for sets that arrive as a
 * fresh object each time with the same strings (the k8s_attributes
 * processor builds one object per span or log entry from its index's pod
 * and namespace names).
 *
 * The key is a trie over the set's (key, value) pairs in iteration order:
 * the processors hand out the same key and value strings again, whose hashes
 * V8 keeps, so a lookup hashes no new string — a joined key per item cost
 * more than encoding the set (measured on the logs encoder). The spans and
 * access-log encoders keep their identity sets' bytes here. A full trie is dropped whole, so a churning
 * working set costs re-encoding, never unbounded memory.
 */

/** Trie nodes kept (one per attribute of each distinct prefix; ~100 B each, plus the values). */
export const ATTRIBUTE_SET_TRIE_NODES = 65_536;

/**
 * A trie node: the sets that continue with (key, value) pairs, and the value
 * derived for the set that ends here. Sets from the processors list their
 * keys in one order, so nearly every node sees one next key: that key and
 * its values are kept apart (one string compare and one Map lookup per
 * attribute; the two-level Map cost a tenth of the access-log encoder's
 * time in bench/logs.ts), other keys under `others`.
 */
interface TrieNode<V> {
  key: string | undefined;
  values: Map<string, TrieNode<V>>;
  others: Map<string, Map<string, TrieNode<V>>> | undefined;
  value: V | undefined;
}

function newNode<V>(): TrieNode<V> {
  return { key: undefined, values: new Map(), others: undefined, value: undefined };
}

export class AttributeSetCache<V> {
  private root: TrieNode<V> = newNode();
  private nodes = 0;

  /**
   * `derive`: what to keep for a set (called once per distinct set while it
   * stays cached, and for every set holding a non-string value, which is
   * never cached).
   */
  constructor(
    private readonly derive: (attributes: Readonly<Record<string, unknown>>) => V,
    private readonly maxNodes = ATTRIBUTE_SET_TRIE_NODES,
  ) {}

  /** The derived value of `attributes`, from the cache when an equal set (same pairs, same order) was seen. */
  get(attributes: Readonly<Record<string, string>>): V {
    let node = this.root;
    for (const k in attributes) {
      const v = attributes[k] as unknown;
      // Bad input (a processor put a non-string in): derived, not cached.
      if (typeof v !== 'string') return this.derive(attributes);
      node.key ??= k;
      let byValue: Map<string, TrieNode<V>> | undefined;
      if (node.key === k) byValue = node.values;
      else {
        node.others ??= new Map();
        byValue = node.others.get(k);
        if (byValue === undefined) {
          byValue = new Map();
          node.others.set(k, byValue);
        }
      }
      let child = byValue.get(v);
      if (child === undefined) {
        if (++this.nodes > this.maxNodes) {
          this.root = newNode();
          this.nodes = 0;
          return this.derive(attributes);
        }
        child = newNode();
        byValue.set(v, child);
      }
      node = child;
    }
    return (node.value ??= this.derive(attributes));
  }

  /** Distinct sets currently cached (tests). */
  get size(): number {
    const count = (n: TrieNode<V>): number => {
      let c = n.value !== undefined ? 1 : 0;
      for (const child of n.values.values()) c += count(child);
      for (const byValue of n.others?.values() ?? []) for (const child of byValue.values()) c += count(child);
      return c;
    };
    return count(this.root);
  }
}
