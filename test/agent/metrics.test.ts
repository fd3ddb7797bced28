// The agent's metrics on real parts, for the values a live agent cannot be driven to yet
// (there is no data path into an agent from outside): a real brick and VolumeManager, writes
// through the replica store, flipped bytes found and repaired, scrub passes, a second device.
import path from 'node:path';
import t from 'tap';
import { AgentMetrics } from '../../src/agent/metrics.js';
import { EventBus } from '../../src/events.js';
import { silentLogger } from '../../src/log.js';
import { VolumeManager } from '../../src/volume/manager.js';
import { brickManager } from '../helpers/bricks.js';
import { sample } from '../helpers/http.js';
import { loopDevice, needsRoot } from '../helpers/loop.js';
import { flipByte } from '../helpers/corrupt.js';


t.test('metrics follow bricks, devices, writes, checksum errors, repairs and scrubs', { skip: needsRoot() }, async (t) => {
  const [brickDevice, spareDevice] = [await loopDevice(t), await loopDevice(t)];
  const bricks = await brickManager(t, { allow: [brickDevice!, spareDevice!], minSizeBytes: 0 });
  const brick = await bricks.adopt(brickDevice!);
  const events = new EventBus();

  // The repair hook knows the good content of "good" only: "bad" has no healthy copy.
  const goodCopies = new Map<string, Buffer>();
  let metrics: AgentMetrics | undefined;
  const volumes = new VolumeManager({
    bricks,
    events,
    log: silentLogger,
    store: {
      segmentBytes: 4 * 2 ** 20,
      checkpointIntervalMs: 0,
      repair: async ({ fid, offset, length }) => goodCopies.get(fid)?.subarray(offset, offset + length),
    },
    onMutationDurable: (volumeId, op, seconds) => metrics!.observeMutation(volumeId, op, seconds),
  });
  t.teardown(() => volumes.close());
  metrics = new AgentMetrics({
    bricks: () => bricks,
    volumes: () => volumes,
    info: () => ({ nodeId: 'node-1', version: '0.0.0', zone: 'a' }),
    events,
    log: silentLogger,
  });
  const scrape = async () => (await metrics!.render()).body;

  // Devices: read from a report refreshed off the scrape path.
  await metrics.refreshDevices();
  let text = await scrape();
  t.equal(sample(text, 'brickd_device_eligible', { device: spareDevice!, reason: 'none' }), 1, 'a blank allowlisted device is eligible');
  t.equal(sample(text, 'brickd_device_eligible', { device: brickDevice!, reason: 'MOUNTED' }), 0, 'the brick device is not');
  t.equal(sample(text, 'brickd_device_size_bytes', { device: spareDevice! }), 320 * 2 ** 20, 'device size');
  t.equal(sample(text, 'brickd_brick_state', { brick: brick.brickId, state: 'mounted' }), 1);
  t.ok((sample(text, 'brickd_brick_bytes', { brick: brick.brickId, kind: 'size' }) ?? 0) > 0);

  // Writes: latency histogram per kind, durable seq, used bytes.
  const vol = await volumes.create({ volumeId: 'vol1', sizeLimitBytes: 64 * 2 ** 20 });
  const content = Buffer.alloc(3 * 4096, 7);
  const good = await vol.store.create('good');
  await vol.store.create('bad');
  goodCopies.set(good.fid, content);
  await vol.store.write('good', 0, content);
  await vol.store.write('bad', 0, content);
  await vol.store.write('bad', 4096, content.subarray(0, 100));
  text = await scrape();
  const v = { volume: 'vol1' };
  t.equal(sample(text, 'brickd_store_mutation_seconds_count', { ...v, kind: 'data' }), 3, 'three data mutations timed');
  t.equal(sample(text, 'brickd_store_mutation_seconds_count', { ...v, kind: 'namespace' }), 2, 'two creates timed');
  const sum = sample(text, 'brickd_store_mutation_seconds_sum', { ...v, kind: 'data' }) ?? 0;
  t.ok(sum > 0 && sum < 10, `latency sum ${sum} s`);
  t.equal(sample(text, 'brickd_store_mutation_seconds_bucket', { ...v, kind: 'data', le: '+Inf' }), 3);
  t.equal(sample(text, 'brickd_volume_durable_seq', v), 5);
  t.equal(sample(text, 'brickd_volume_durable_generation', v), 0, 'seq 5 was made at the volume\'s generation 0');
  t.equal(sample(text, 'brickd_volume_used_bytes', v), 2 * content.length);

  // Checksum errors: one repaired from the good copy, one with no healthy copy.
  const data = path.join(vol.dir, 'data');
  await flipByte(path.join(data, 'good'), 5000);
  t.same(await vol.store.read('good', 0, content.length), content, 'the bad block was repaired on read');
  await flipByte(path.join(data, 'bad'), 10);
  await t.rejects(vol.store.read('bad', 0, 10), { code: 'CHECKSUM_MISMATCH' });
  text = await scrape();
  t.equal(sample(text, 'brickd_checksum_errors_total', v), 2, 'both found');
  t.equal(sample(text, 'brickd_checksum_repaired_total', v), 1, 'one repaired');

  // Scrub: coverage and the time of the last complete pass.
  t.equal(sample(text, 'brickd_scrub_last_completion_timestamp_seconds', v), 0);
  const scrubber = await volumes.startScrub('vol1');
  const done = await scrubber.whenIdle();
  t.equal(done.state, 'done');
  text = await scrape();
  t.equal(sample(text, 'brickd_scrub_bytes_scanned', v), 6 * 4096, 'every block of both files');
  t.equal(sample(text, 'brickd_scrub_bytes_total', v), 2 * content.length);
  t.equal(sample(text, 'brickd_scrub_last_completion_timestamp_seconds', v), Date.parse(done.lastCompletedAt!) / 1000);
  t.equal(sample(text, 'brickd_checksum_errors_total', v), 3, 'the scrub found the unrepairable block again');

  // Adopting the spare shows once the device report is refreshed.
  const second = await bricks.adopt(spareDevice!);
  await metrics.refreshDevices();
  text = await scrape();
  t.equal(sample(text, 'brickd_device_eligible', { device: spareDevice!, reason: 'MOUNTED' }), 0);
  t.equal(sample(text, 'brickd_brick_state', { brick: second.brickId, state: 'mounted' }), 1);

  // A deleted replica's series go with it, the histogram's too.
  await volumes.delete('vol1');
  text = await scrape();
  for (const name of ['brickd_volume_used_bytes', 'brickd_checksum_errors_total', 'brickd_scrub_bytes_scanned', 'brickd_store_mutation_seconds_count']) {
    t.equal(sample(text, name, v), undefined, `${name} gone with the volume`);
  }
  await volumes.close();
});
