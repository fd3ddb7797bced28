// Configuration: precedence (defaults < file < env < flags) and a typed, named error for
// every bad value.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { DEFAULT_CONFIG, embeddedEnabled, loadConfig, parseListenAddress } from '../../src/agent/config.js';
import { rejectsWithCode } from '../helpers/assert.js';
import { tempDir } from '../helpers/loop.js';

t.test('defaults', async (t) => {
  const config = await loadConfig({});
  t.same(config, DEFAULT_CONFIG);
  t.ok(embeddedEnabled(config), 'embedded default when no devices are allowed');
});

t.test('file < env < flags', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'brickd.json');
  await writeFile(file, JSON.stringify({ stateDir: '/srv/a', zone: 'z1', allow: ['/dev/sd[b-d]'], fsType: 'ext4', minSizeBytes: '1GiB' }));
  const config = await loadConfig({
    env: { BRICKD_STATE_DIR: '/srv/b', BRICKD_ZONE: 'z2', BRICKD_EMBEDDED_COUNT: '2' },
    argv: ['--config', file, '--zone=z3', '--allow', '/dev/vdb', '--allow', '/dev/vdc', '--unmount-on-exit'],
  });
  t.equal(config.stateDir, '/srv/b', 'env beats file');
  t.equal(config.zone, 'z3', 'flag beats env');
  t.same(config.allow, ['/dev/vdb', '/dev/vdc'], 'flags replace the list');
  t.equal(config.fsType, 'ext4');
  t.equal(config.minSizeBytes, 2 ** 30);
  t.equal(config.embeddedCount, 2);
  t.equal(config.unmountOnExit, true);
  t.notOk(embeddedEnabled(config), 'no embedded default when devices are allowed');
  t.ok(embeddedEnabled({ ...config, embedded: 'on' }));
});

t.test('metricsAddress: loopback by default, any IP literal and port, or off', async (t) => {
  t.equal((await loadConfig({})).metricsAddress, '127.0.0.1:9464');
  t.equal((await loadConfig({ argv: ['--metrics-address', '[::1]:9100'] })).metricsAddress, '[::1]:9100');
  t.equal((await loadConfig({ env: { BRICKD_METRICS_ADDRESS: '0.0.0.0:9464' } })).metricsAddress, '0.0.0.0:9464');
  t.equal((await loadConfig({ argv: ['--metrics-address=off'] })).metricsAddress, 'off');
  t.same(parseListenAddress('[::1]:9100'), { host: '::1', port: 9100 });
  t.same(parseListenAddress('10.0.0.7:65535'), { host: '10.0.0.7', port: 65535 });
  t.equal(parseListenAddress('off'), undefined);
});

t.test('replication: off by default; address, cluster, secret file, quorum timeout and resync rate', async (t) => {
  const defaults = await loadConfig({});
  t.match(defaults, { replicationAddress: 'off', advertiseAddress: '', clusterId: 'brickd', replicationSecretFile: '', quorumTimeoutMs: 10_000, resyncRateBytesPerSec: 100 * 2 ** 20 });
  const on = await loadConfig({ argv: ['--replication-address', '0.0.0.0:7400', '--advertise-address', '127.0.0.2:7400', '--cluster-id', 'prod-1', '--replication-secret-file', '/etc/brickd/secret', '--quorum-timeout-ms', '2500', '--resync-rate-bytes-per-sec', '40MiB'] });
  t.match(on, { replicationAddress: '0.0.0.0:7400', advertiseAddress: '127.0.0.2:7400', clusterId: 'prod-1', replicationSecretFile: '/etc/brickd/secret', quorumTimeoutMs: 2500, resyncRateBytesPerSec: 40 * 2 ** 20 });
  t.equal((await loadConfig({ env: { BRICKD_RESYNC_RATE_BYTES_PER_SEC: '0' } })).resyncRateBytesPerSec, 0, '0: unthrottled');
});

t.test('activity log extents: 1024 by default, from a flag or the environment', async (t) => {
  t.equal((await loadConfig({})).activityLogExtents, 1024);
  t.equal((await loadConfig({ argv: ['--activity-log-extents', '64'] })).activityLogExtents, 64);
  t.equal((await loadConfig({ env: { BRICKD_ACTIVITY_LOG_EXTENTS: '4096' } })).activityLogExtents, 4096);
});

t.test('every bad value is CONFIG_INVALID naming key and source', async (t) => {
  const dir = await tempDir(t);
  const bad: Array<[string, Parameters<typeof loadConfig>[0], RegExp]> = [
    ['relative state dir', { argv: ['--state-dir', 'relative/dir'] }, /stateDir \(from --state-dir\): expected an absolute path/],
    ['bad fs type', { env: { BRICKD_FS_TYPE: 'btrfs' } }, /fsType \(from BRICKD_FS_TYPE\): expected one of xfs, ext4/],
    ['bad size', { argv: ['--min-size-bytes', '12 parsecs'] }, /minSizeBytes .* expected a size/],
    ['embedded too small', { argv: ['--embedded-size-bytes', '1MiB'] }, /embeddedSizeBytes .* ≥ 67108864/],
    ['count out of range', { argv: ['--embedded-count', '0'] }, /embeddedCount .* integer 1\.\.16/],
    ['allow not /dev', { argv: ['--allow', 'sdb'] }, /allow .* absolute \/dev\/\.\.\. glob/],
    ['unknown flag', { argv: ['--frobnicate'] }, /unknown flag/],
    ['missing value', { argv: ['--zone'] }, /--zone .* missing value/],
    ['bad zone', { argv: ['--zone', 'a b'] }, /zone .* A-Z/],
    ['bad boolean', { env: { BRICKD_UNMOUNT_ON_EXIT: 'maybe' } }, /unmountOnExit .* true or false/],
    ['bad log level', { env: { BRICKD_LOG_LEVEL: 'loud' } }, /logLevel/],
    ['missing file', { argv: ['--config', path.join(dir, 'nope.json')] }, /cannot read config file/],
    ['metrics address without port', { argv: ['--metrics-address', '127.0.0.1'] }, /metricsAddress \(from --metrics-address\): expected "off" or host:port/],
    ['metrics address by name', { env: { BRICKD_METRICS_ADDRESS: 'localhost:9464' } }, /metricsAddress \(from BRICKD_METRICS_ADDRESS\): expected "off" or host:port with an IP address/],
    ['metrics port 0', { argv: ['--metrics-address', '127.0.0.1:0'] }, /metricsAddress .*port 1-65535/],
    ['metrics port too big', { argv: ['--metrics-address', '127.0.0.1:65536'] }, /metricsAddress/],
    ['metrics IPv6 without brackets', { argv: ['--metrics-address', '::1:9464'] }, /metricsAddress/],
    ['metrics IPv4 in brackets', { argv: ['--metrics-address', '[127.0.0.1]:9464'] }, /metricsAddress/],
    ['replication address by name', { argv: ['--replication-address', 'node-1:7400'] }, /replicationAddress \(from --replication-address\): expected "off" or host:port with an IP address/],
    ['advertise address off', { argv: ['--advertise-address', 'off'] }, /advertiseAddress .*expected host:port/],
    ['cluster id with a slash', { argv: ['--cluster-id', 'a/b'] }, /clusterId .* A-Z/],
    ['relative secret file', { env: { BRICKD_REPLICATION_SECRET_FILE: 'secret' } }, /replicationSecretFile \(from BRICKD_REPLICATION_SECRET_FILE\): expected an absolute path/],
    ['quorum timeout too short', { argv: ['--quorum-timeout-ms', '5'] }, /quorumTimeoutMs .* 100\.\.3600000/],
    ['resync rate not a size', { argv: ['--resync-rate-bytes-per-sec', 'fast'] }, /resyncRateBytesPerSec \(from --resync-rate-bytes-per-sec\): expected a size/],
    ['resync rate negative', { env: { BRICKD_RESYNC_RATE_BYTES_PER_SEC: '-5' } }, /resyncRateBytesPerSec .* expected a size/],
    ['activity log extents 0', { argv: ['--activity-log-extents', '0'] }, /activityLogExtents \(from --activity-log-extents\): expected an integer 1\.\.4096/],
    ['activity log extents past the slot', { env: { BRICKD_ACTIVITY_LOG_EXTENTS: '4097' } }, /activityLogExtents .* 1\.\.4096/],
    ['activity log extents not a number', { argv: ['--activity-log-extents', 'lots'] }, /activityLogExtents/],
  ];
  for (const [name, sources, message] of bad) {
    await rejectsWithCode(t, loadConfig(sources), 'CONFIG_INVALID', message, name);
  }
  const notJson = path.join(dir, 'bad.json');
  await writeFile(notJson, '{ nope');
  await rejectsWithCode(t, loadConfig({ file: notJson }), 'CONFIG_INVALID', /cannot read config file/);
  const unknownKey = path.join(dir, 'unknown.json');
  await writeFile(unknownKey, JSON.stringify({ stateDir: '/x', colour: 'blue' }));
  await rejectsWithCode(t, loadConfig({ file: unknownKey }), 'CONFIG_INVALID', /colour \(from .*\): unknown key/);
  const array = path.join(dir, 'array.json');
  await writeFile(array, '[]');
  await rejectsWithCode(t, loadConfig({ file: array }), 'CONFIG_INVALID', /expected a JSON object/);
});
