// The optional TCP control listener: mutual TLS only. A client with a certificate from the
// cluster CA calls and is logged by its certificate's CN; a client without a certificate,
// one with a certificate from another CA, and a plaintext client are all refused at the
// handshake and change nothing. The certificates are made here with openssl.
//
// Needs root (the agent adopts loop devices); skipped otherwise.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import t from 'tap';
import { run } from '../../src/exec.js';
import { controlClient } from '../../src/wire/control.js';
import { startControlAgent } from '../helpers/control.js';
import { freePort } from '../helpers/http.js';
import { needsRoot, tempDir } from '../helpers/loop.js';

/** A CA and a certificate it signs for `cn` (with an IP SAN for servers), as PEM files in `dir`. */
async function makePki(dir: string, name: string): Promise<{ ca: string; caKey: string }> {
  const ca = path.join(dir, `${name}-ca.pem`);
  const caKey = path.join(dir, `${name}-ca.key`);
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', caKey, '-out', ca, '-days', '2', '-subj', `/CN=${name} test CA`]);
  return { ca, caKey };
}

async function issue(dir: string, pki: { ca: string; caKey: string }, cn: string, server: boolean): Promise<{ cert: string; key: string }> {
  const key = path.join(dir, `${cn}.key`);
  const csr = path.join(dir, `${cn}.csr`);
  const cert = path.join(dir, `${cn}.pem`);
  const ext = path.join(dir, `${cn}.ext`);
  await run('openssl', ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${cn}`]);
  await run('sh', ['-c', `printf '%s\\n' '${server ? 'subjectAltName=IP:127.0.0.1' : 'extendedKeyUsage=clientAuth'}' > ${ext}`]);
  await run('openssl', ['x509', '-req', '-in', csr, '-CA', pki.ca, '-CAkey', pki.caKey, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext]);
  return { cert, key };
}

t.test('TCP control listener: mutual TLS only', { skip: needsRoot() }, async (t) => {
  const dir = await tempDir(t, 'brickd-tls-');
  const cluster = await makePki(dir, 'cluster');
  const stranger = await makePki(dir, 'stranger');
  const server = await issue(dir, cluster, 'agent', true);
  const orchestrator = await issue(dir, cluster, 'orchestrator', false);
  const impostor = await issue(dir, stranger, 'impostor', false);
  const port = await freePort();
  const agent = await startControlAgent(t, {
    embeddedCount: 1,
    args: ['--control-tcp-address', `127.0.0.1:${port}`, '--control-tls-cert', server.cert, '--control-tls-key', server.key, '--control-tls-ca', cluster.ca],
  });
  const ca = await readFile(cluster.ca);
  const call = (credentials: grpc.ChannelCredentials, method: 'getNodeInfo' | 'createVolume', request: object) =>
    new Promise<{ err?: grpc.ServiceError; res?: { nodeId?: string; volumeId?: string } }>((resolve) => {
      const client = controlClient(`127.0.0.1:${port}`, credentials);
      (client[method] as unknown as (r: object, m: grpc.Metadata, o: object, cb: (e: grpc.ServiceError | null, r?: object) => void) => void)(
        request, new grpc.Metadata(), { deadline: Date.now() + 5000 },
        (err, res) => {
          client.close();
          resolve(err ? { err } : { res: res as { nodeId?: string } });
        },
      );
    });

  const trusted = grpc.credentials.createSsl(ca, await readFile(orchestrator.key), await readFile(orchestrator.cert));
  const info = await call(trusted, 'getNodeInfo', {});
  t.equal(info.err, undefined, 'a client with a cluster certificate calls');
  t.equal(info.res?.nodeId, (await agent.api.getNodeInfo({})).nodeId, 'and reaches this agent');
  const made = await call(trusted, 'createVolume', { volumeId: 'over-tls', sizeLimitBytes: 1048576 });
  t.equal(made.res?.volumeId, 'over-tls');
  t.ok(agent.proc.lines.some((l) => l.msg === 'control call' && l.method === 'createVolume' && /^(ipv4:)?127\.0\.0\.1:\d+ CN=orchestrator$/.test(String(l.peer))), 'logged with its address and certificate CN');

  const refused: Array<[string, grpc.ChannelCredentials]> = [
    ['no client certificate', grpc.credentials.createSsl(ca)],
    ['a certificate from another CA', grpc.credentials.createSsl(ca, await readFile(impostor.key), await readFile(impostor.cert))],
    ['plaintext', grpc.credentials.createInsecure()],
  ];
  for (const [name, credentials] of refused) {
    const r = await call(credentials, 'createVolume', { volumeId: `bad-${name.length}`, sizeLimitBytes: 1048576 });
    t.equal(r.err?.code, grpc.status.UNAVAILABLE, `${name}: refused at the handshake`);
  }
  t.same((await agent.api.listVolumes({})).volumes.map((v) => v.volumeId), ['over-tls'], 'the refused clients created nothing');
});
