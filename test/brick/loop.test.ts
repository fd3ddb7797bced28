// Loop devices (src/brick/loop.ts): attached with direct I/O on their backing file where the
// filesystem under it takes O_DIRECT, found again by backing file, detached.
import { constants } from 'node:fs';
import { open, readdir } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { findLoopFor, loopDirectIo } from '../../src/brick/loop.js';
import { loopDevice, needsRoot, tempDir } from '../helpers/loop.js';

t.test('a loop device reads and writes its backing file with direct I/O where the filesystem allows', { skip: needsRoot() }, async (t) => {
  const dir = await tempDir(t);
  const device = await loopDevice(t, 64, dir);
  // What the filesystem under the temp dir allows decides what to expect.
  const probe = path.join(dir, 'probe');
  const directOk = await open(probe, constants.O_CREAT | constants.O_RDWR | constants.O_DIRECT).then(
    async (h) => (await h.close(), true),
    () => false,
  );
  t.equal(await loopDirectIo(device), directOk, directOk ? 'direct I/O on' : `direct I/O off: ${dir} refuses O_DIRECT`);
  const [image] = (await readdir(dir)).filter((n) => n.endsWith('.img'));
  t.ok(image, 'the backing file is in the temp dir');
  t.equal(await findLoopFor(path.join(dir, image!)), device, 'found again by its backing file');
  t.equal(await loopDirectIo('/dev/no-such-loop'), false, 'a device that is not a loop device: false');
});
