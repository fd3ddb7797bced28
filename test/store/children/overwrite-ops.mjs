// The seeded operation sequence shared by overwrite-writer.mjs and its parent test.
export function overwriteOps(seed, count) {
  let s = seed >>> 0 || 1;
  const random = (n) => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return Math.floor((s / 2 ** 32) * n);
  };
  const ops = [{ kind: 'create', file: 'a' }, { kind: 'create', file: 'b' }];
  while (ops.length < count) {
    const file = random(2) ? 'a' : 'b';
    const r = random(10);
    if (r < 7) {
      const large = random(2) === 1;
      ops.push({ kind: 'write', file, offset: random(200_000), length: large ? 32 * 1024 + random(100_000) : 1 + random(20_000), fill: 1 + random(255) });
    } else {
      ops.push({ kind: 'truncate', file, size: random(250_000) });
    }
  }
  return ops;
}
