// A seeded random generator for tests that draw their inputs (property cases, random read
// boundaries): the same seed gives the same sequence, so a failure is reproducible.

/**
 * A deterministic generator (xorshift32) of numbers in [0, 1).
 * @example const next = seededRandom(42); const len = Math.floor(next() * 200);
 */
export function seededRandom(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}
