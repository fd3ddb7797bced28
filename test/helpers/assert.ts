// Assertions on brickd's typed errors.
import type { Test } from 'tap';

/** Assert that `promise` rejects with an error whose `code` is `code` and whose message matches. */
export async function rejectsWithCode(t: Test, promise: Promise<unknown>, code: string, message?: RegExp, name?: string): Promise<Error | undefined> {
  try {
    await promise;
  } catch (err) {
    const e = err as Error & { code?: string };
    t.equal(e.code, code, `${name ?? 'rejects'}: code ${code}`);
    if (message) t.match(e.message, message, `${name ?? 'rejects'}: message`);
    return e;
  }
  t.fail(`${name ?? 'promise'} resolved; expected rejection with ${code}`);
  return undefined;
}
