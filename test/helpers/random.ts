// Reproducible randomness for tests: a xorshift32 generator from a seed the test prints.
export function xorshift(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

/** An integer generator: next(n) is in [0, n). */
export function randomInts(seed: number): (n: number) => number {
  const next = xorshift(seed);
  return (n) => Math.floor(next() * n);
}

/** Deterministic bytes from a seed (a linear congruential generator's high bytes). */
export function pattern(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    b[i] = s >>> 24;
  }
  return b;
}
