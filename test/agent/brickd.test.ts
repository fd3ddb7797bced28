// The brickd daemon as a real process on the embedded default: loop-file devices under its
// state dir become mounted bricks; SIGTERM stops it cleanly; a restart finds the same bricks.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { findLoopFor } from '../../src/brick/loop.js';
import { readMountInfo } from '../../src/brick/mountinfo.js';
import { cleanupAgentState, startAgent } from '../helpers/agent.js';
import { freePort } from '../helpers/http.js';
import { needsRoot, tempDir } from '../helpers/loop.js';

const running = (l: Record<string, unknown>) => l.msg === 'agent running';

t.test('embedded default: start, stop, restart, unmount on exit', { skip: needsRoot() }, async (t) => {
  const stateDir = await tempDir(t, 'brickd-agent-');
  // Its own control socket and metrics port, so it never meets another agent on this machine.
  const metricsAddress = `127.0.0.1:${await freePort()}`;
  const args = ['--state-dir', stateDir, '--embedded', '--embedded-count', '2', '--embedded-size-bytes', '320MiB', '--control-socket', path.join(stateDir, 'control.sock'), '--metrics-address', metricsAddress];
  // Whatever happens, leave no mount or loop device of this test behind.
  cleanupAgentState(t, stateDir);

  const first = startAgent(t, args);
  const up = await first.waitFor(running);
  // A second agent on the same state dir (its own socket) is refused before it touches anything.
  const intruder = startAgent(t, ['--state-dir', stateDir, '--embedded', '--control-socket', path.join(stateDir, 'other.sock')]);
  t.equal(await intruder.exited, 1, 'a second agent on the state dir exits 1');
  t.ok(intruder.lines.some((l) => (l.err as { code?: string } | undefined)?.code === 'STATE_DIR_IN_USE'), 'with STATE_DIR_IN_USE');
  const bricks = up.bricks as Array<{ brickId: string; state: string; mountPath: string; device: string }>;
  t.equal(bricks.length, 2, 'two embedded bricks');
  t.ok(bricks.every((b) => b.state === 'mounted'));
  const mounts = await readMountInfo();
  for (const b of bricks) t.ok(mounts.some((m) => m.target === b.mountPath && m.fsType === 'xfs'), `${b.mountPath} mounted`);
  first.child.kill('SIGTERM');
  t.equal(await first.exited, 0, 'clean exit on SIGTERM');
  t.ok(first.lines.some((l) => l.msg === 'agent stopped'));
  t.ok((await readMountInfo()).some((m) => m.target === bricks[0]!.mountPath), 'bricks stay mounted across a plain stop');

  const second = startAgent(t, [...args, '--unmount-on-exit']);
  const again = await second.waitFor(running);
  t.same(
    (again.bricks as typeof bricks).map((b) => b.brickId).sort(),
    bricks.map((b) => b.brickId).sort(),
    'restart finds the same bricks',
  );
  second.child.kill('SIGINT');
  t.equal(await second.exited, 0);
  const after = await readMountInfo();
  t.notOk(after.some((m) => m.target.startsWith(stateDir)), 'no brick mounted after --unmount-on-exit');
  t.equal(await findLoopFor(path.join(stateDir, 'devices', 'disk0.img')), undefined, 'embedded loop devices detached');
});

t.test('bad configuration exits 2 with the reason', async (t) => {
  const agent = startAgent(t, ['--fs-type', 'btrfs']);
  t.equal(await agent.exited, 2);
  t.match(agent.stderr.join('\n'), /CONFIG_INVALID: fsType \(from --fs-type\): expected one of xfs, ext4/);
});

t.test('replication on without a usable secret exits 2 and names the setting', { skip: needsRoot() }, async (t) => {
  const stateDir = await tempDir(t, 'brickd-secret-state-');
  cleanupAgentState(t, stateDir);
  const base = ['--state-dir', stateDir, '--embedded', '--embedded-count', '1', '--embedded-size-bytes', '320MiB', '--control-socket', path.join(stateDir, 'control.sock'), '--unmount-on-exit', '--replication-address', '127.0.0.1:1'];
  const missing = startAgent(t, base);
  t.equal(await missing.exited, 2, 'no secret file configured');
  t.match(missing.stderr.join('\n'), /CONFIG_INVALID: replicationSecretFile: replication is on/);
  const short = path.join(stateDir, 'short-secret');
  await writeFile(short, 'too-short\n', { mode: 0o600 });
  const tooShort = startAgent(t, [...base, '--replication-secret-file', short]);
  t.equal(await tooShort.exited, 2, 'a secret under 16 bytes');
  t.match(tooShort.stderr.join('\n'), /holds 9 bytes; the secret must have at least 16/);
  const absent = startAgent(t, [...base, '--replication-secret-file', path.join(stateDir, 'absent')]);
  t.equal(await absent.exited, 2, 'a secret file that does not exist');
  t.match(absent.stderr.join('\n'), /cannot read .*absent/);
  const noCert = startAgent(t, ['--state-dir', stateDir, '--embedded', '--embedded-count', '1', '--embedded-size-bytes', '320MiB', '--control-socket', path.join(stateDir, 'control.sock'), '--control-tcp-address', '127.0.0.1:1']);
  t.equal(await noCert.exited, 2, 'a TCP control listener without its TLS files');
  t.match(noCert.stderr.join('\n'), /CONFIG_INVALID: controlTlsCert: the TCP control listener \(controlTcpAddress\) needs it/);
  const noGroup = startAgent(t, ['--state-dir', stateDir, '--embedded', '--embedded-count', '1', '--embedded-size-bytes', '320MiB', '--control-socket', path.join(stateDir, 'control.sock'), '--control-socket-group', 'no-such-group-brickd']);
  t.equal(await noGroup.exited, 2, 'a control socket group that does not exist');
  t.match(noGroup.stderr.join('\n'), /CONFIG_INVALID: controlSocketGroup: no group "no-such-group-brickd" in \/etc\/group/);
  t.notOk((await readMountInfo()).some((m) => m.target.startsWith(stateDir + '/')), 'nothing was mounted before the refusals');
});

t.test('without root it says why and exits 3', { skip: process.getuid?.() === 0 ? false : 'already not root' }, async (t) => {
  const stateDir = await tempDir(t, 'brickd-noroot-');
  const agent = startAgent(t, ['--state-dir', stateDir], { command: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'] });
  t.equal(await agent.exited, 3);
  t.match(agent.stderr.join('\n'), /NOT_ROOT: brickd formats and mounts block devices and needs root/);
});
