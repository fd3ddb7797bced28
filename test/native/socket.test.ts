// The addon's socket concern: peerCredentials (SO_PEERCRED) on both ends of a real Unix
// socket connection made in this process, and its errors for what is not a Unix socket.
import { open } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import t from 'tap';
import { native } from '../../src/native.js';
import { tempDir } from '../helpers/loop.js';

const fdOf = (socket: net.Socket): number => (socket as unknown as { _handle: { fd: number } })._handle.fd;

t.test('the peer of a Unix socket connection is this process', async (t) => {
  const dir = await tempDir(t, 'brickd-peercred-');
  const socketPath = path.join(dir, 's.sock');
  const accepted = new Promise<net.Socket>((resolve) => {
    const server = net.createServer(resolve);
    server.listen(socketPath);
    t.teardown(() => new Promise<void>((r) => server.close(() => r())));
  });
  const client = net.connect(socketPath);
  await new Promise((resolve) => client.once('connect', resolve));
  const server = await accepted;
  t.teardown(() => {
    client.destroy();
    server.destroy();
  });
  const expected = { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() };
  t.same(native.peerCredentials(fdOf(server)), expected, 'the server end sees the client');
  t.same(native.peerCredentials(fdOf(client)), expected, 'the client end sees the server');
});

t.test('not a socket, not an fd, not a number', async (t) => {
  const dir = await tempDir(t, 'brickd-peercred-');
  const file = await open(path.join(dir, 'plain'), 'w');
  t.teardown(() => file.close());
  t.throws(() => native.peerCredentials(file.fd), { code: 'ENOTSOCK', syscall: 'getsockopt(SO_PEERCRED)' });
  t.throws(() => native.peerCredentials(2 ** 30), { code: 'EBADF' });
  t.throws(() => native.peerCredentials(-1), RangeError);
  t.throws(() => native.peerCredentials('3' as unknown as number), TypeError);
});
