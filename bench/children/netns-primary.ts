// Bench child: runs one measurement of the replication case (bench/replicated.ts) with the
// primary in this process, which the parent started in the primary's network namespace;
// the replica agents (or the TCP sink) it starts go into the other namespaces named in the
// job. argv: the job as JSON. Sends `ready` at once, then one event: `result` with the
// measurement's result, or `failed` with the error's message. Stopped by the parent after
// that (or, like every bench child, when the parent goes away: its own children then stop
// too, their IPC channels closing with it).
import { runNetnsJob, type NetnsJob } from '../replicated.js';
import { sendEvent, serveChild } from './serve.js';

const job = JSON.parse(process.argv[2] ?? 'null') as NetnsJob | null;
if (!job || (job.kind !== 'replicated' && job.kind !== 'tcp')) throw new Error('usage: netns-primary JOB_JSON');

await serveChild(async () => ({ info: {}, close: async () => {} }));
try {
  sendEvent({ kind: 'result', result: await runNetnsJob(job) });
} catch (err) {
  sendEvent({ kind: 'failed', message: err instanceof Error ? err.message : String(err) });
}
