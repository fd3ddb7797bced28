// The pino root logger and child-logger helpers. Structured, short verb-first messages;
// bindings carry { node, brick, volume, peer }. Nothing per-I/O above debug level. Writes
// are synchronous so the last lines before a crash or exit are not lost.
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export function createLogger(level: LevelWithSilent = 'info', destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Replication secrets and TLS keys must never reach a log line.
      redact: { paths: ['*.secret', '*.sharedSecret', '*.key', 'config.replication.secret'], censor: '[redacted]' },
    },
    destination ?? pino.destination({ fd: 1, sync: true }),
  );
}

/** A logger that drops everything (tests and library use without an agent). */
export const silentLogger: Logger = pino({ level: 'silent' });
