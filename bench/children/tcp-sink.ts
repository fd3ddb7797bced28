// Bench child: the far end of the TCP baselines. Listens on HOST (argv; default 127.0.0.1,
// or its address in the network namespace it runs in) on a free port, reported in `ready`,
// reads and discards everything, and on each connection's end sends an event with the
// bytes it received.
import net from 'node:net';
import { sendEvent, serveChild } from './serve.js';

await serveChild(async () => {
  const host = process.argv[2] ?? '127.0.0.1';
  let total = 0;
  const server = net.createServer((socket) => {
    let received = 0;
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
    });
    socket.on('end', () => {
      total += received;
      sendEvent({ kind: 'received', bytes: received });
      socket.end();
    });
    socket.on('error', () => socket.destroy());
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, host, resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    info: { port },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    counters: () => ({ bytes: total }),
  };
});
