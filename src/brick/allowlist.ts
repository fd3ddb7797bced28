// The device allowlist: the hard boundary of which disks the agent may open or format.
//
// Patterns are shell-style globs (`*`, `?`, `[a-z]`) matched against a device's kernel path
// (/dev/sdb) and against every stable alias udev made for it (/dev/disk/by-id/...,
// /dev/disk/by-path/...), so operators can name disks by serial number. A device that
// matches no pattern is never opened by the agent, not even to probe it.
// `force` on adoption never widens this list.

export type Allowlist = readonly string[];

function globToRegExp(glob: string): RegExp {
  let out = '^';
  for (let i = 0; i < glob.length; i++) {
    const ch = glob[i]!;
    if (ch === '*') out += '[^/]*';
    else if (ch === '?') out += '[^/]';
    else if (ch === '[') {
      const close = glob.indexOf(']', i + 1);
      if (close < 0) {
        out += '\\[';
        continue;
      }
      let body = glob.slice(i + 1, close);
      if (body.startsWith('!')) body = '^' + body.slice(1);
      out += `[${body.replace(/\\/g, '\\\\')}]`;
      i = close;
    } else out += ch.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(out + '$');
}

/** Throws RangeError naming the bad pattern (patterns must be absolute /dev paths). */
export function validateAllowlist(patterns: readonly unknown[]): asserts patterns is string[] {
  for (const p of patterns) {
    if (typeof p !== 'string' || !p.startsWith('/dev/') || p.includes('..')) {
      throw new RangeError(`devices.allow: pattern ${JSON.stringify(p)} must be an absolute /dev/... glob without '..'`);
    }
  }
}

/** The first pattern that matches any of the device's names, or undefined. */
export function matchAllowlist(allow: Allowlist, names: readonly string[]): string | undefined {
  for (const pattern of allow) {
    const re = globToRegExp(pattern);
    if (names.some((n) => re.test(n))) return pattern;
  }
  return undefined;
}
