#!/usr/bin/env node
// brickd: the daemon entry. Loads the configuration, starts the agent, and shuts it down
// cleanly on SIGTERM/SIGINT (bricks stay mounted unless --unmount-on-exit).
//
// Exit codes: 0 clean stop, 1 failed to start or stop, 2 bad configuration, 3 not root.
import { loadConfig } from '../agent/config.js';
import { Agent } from '../agent/agent.js';
import { isBrickdError } from '../errors.js';
import { createLogger } from '../log.js';
import { tuneV8Heap } from '../v8-heap.js';

tuneV8Heap();

const USAGE = `usage: brickd [--config FILE] [--state-dir DIR] [--allow GLOB]... [--fs-type xfs|ext4]
              [--embedded | --no-embedded] [--embedded-count N] [--embedded-size-bytes SIZE]
              [--min-size-bytes SIZE] [--zone NAME] [--log-level LEVEL] [--unmount-on-exit]
              [--control-socket PATH] [--metrics-address HOST:PORT|off]
              [--replication-address HOST:PORT|off] [--advertise-address HOST:PORT]
              [--cluster-id ID] [--replication-secret-file FILE] [--quorum-timeout-ms MS]
              [--resync-rate-bytes-per-sec SIZE (per second; 0: unthrottled)]
Every flag also reads from BRICKD_<NAME> (e.g. BRICKD_STATE_DIR) and from the JSON config file.`;

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  let config;
  try {
    config = await loadConfig({ env: process.env, argv });
  } catch (err) {
    process.stderr.write(`brickd: ${(err as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const log = createLogger(config.logLevel);
  const agent = new Agent(config, log);

  let stopping: Promise<number> | undefined;
  const stop = (signal: string) => {
    stopping ??= (async () => {
      log.info({ signal }, 'stop on signal');
      try {
        await agent.stop();
        return 0;
      } catch (err) {
        log.error({ err }, 'stop failed');
        return 1;
      }
    })();
    return stopping;
  };
  const done = new Promise<number>((resolve) => {
    process.once('SIGTERM', () => void stop('SIGTERM').then(resolve));
    process.once('SIGINT', () => void stop('SIGINT').then(resolve));
  });

  // Nothing else keeps the event loop alive until the control socket serves: hold it open
  // until a signal has stopped the agent.
  const keepAlive = setInterval(() => {}, 2 ** 30);
  void done.finally(() => clearInterval(keepAlive));
  try {
    await agent.start();
  } catch (err) {
    clearInterval(keepAlive);
    log.fatal({ err }, 'start failed');
    // A configuration value checked only at start (the replication secret file) is bad configuration too.
    if (isBrickdError(err, 'CONFIG_INVALID')) {
      process.stderr.write(`brickd: ${(err as Error).message}\n`);
      return 2;
    }
    if (!isBrickdError(err, 'NOT_ROOT')) return 1;
    process.stderr.write(`brickd: ${(err as Error).message}\n`);
    return 3;
  }
  return done;
}

const code = await main();
// pino writes asynchronously; flush before leaving.
setImmediate(() => process.exit(code));
