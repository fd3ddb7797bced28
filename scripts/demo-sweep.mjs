// What a demo agent that did not stop cleanly left under the demo directory: its bricks
// still mounted, a dead FUSE mount, its loop devices still attached. A clean stop
// (SIGTERM with --unmount-on-exit) leaves none of these; a node the demo SIGKILLed and
// could not restart (an error, or Ctrl-C at the wrong moment) does.
//
// Ownership: it only touches mounts whose mount point is under the demo directory and loop
// devices backed by a file under it; the demo made that directory and refuses to start
// when it exists already, so everything there is the demo's.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { run } from '../dist/src/exec.js';

/** Mount points under `dir` (deepest first), from /proc/self/mountinfo. */
export async function mountsUnder(dir) {
  const info = await readFile('/proc/self/mountinfo', 'utf8');
  const points = info
    .split('\n')
    .map((line) => line.split(' ')[4])
    .filter(Boolean)
    // mountinfo escapes space, tab, newline and backslash as octal.
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, oct) => String.fromCharCode(parseInt(oct, 8))))
    .filter((p) => p === dir || p.startsWith(dir + '/'));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** Loop devices backed by a file under `dir` (from `losetup --list`, which also shows deleted backing files). */
export async function loopsUnder(dir) {
  const { stdout } = await run('losetup', ['--list', '--noheadings', '--output', 'NAME,BACK-FILE']);
  return stdout
    .split('\n')
    .map((line) => /^(\S+)\s+(.*?)(?: \(deleted\))?$/.exec(line.trim()))
    .filter((m) => m && (m[2] === dir || m[2].startsWith(dir + '/')))
    .map((m) => ({ device: m[1], file: m[2] }));
}

/**
 * Unmount everything under `dir` (lazily: a dead FUSE mount or a brick still held goes
 * anyway) and detach the loop devices backed by its files. Resolves with one line per
 * thing removed and one per failure.
 */
export async function sweep(dir) {
  const done = [];
  for (const point of await mountsUnder(dir)) {
    await run('umount', ['-l', point]).then(
      () => done.push(`unmounted ${point}`),
      (err) => done.push(`could not unmount ${point}: ${err.message}`),
    );
  }
  for (const { device, file } of await loopsUnder(dir)) {
    await run('losetup', ['-d', device]).then(
      () => done.push(`detached ${device} (${path.relative(dir, file)})`),
      (err) => done.push(`could not detach ${device}: ${err.message}`),
    );
  }
  return done;
}

