// Bench child: the far end of the loopback TCP baseline. Listens on 127.0.0.1 (a free port,
// reported in `ready`), reads and discards everything, and on each connection's end sends
// an event with the bytes it received.
import net from 'node:net';
import { sendEvent, serveChild } from './serve.js';

await serveChild(async () => {
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
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    info: { port },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    counters: () => ({ bytes: total }),
  };
});
