#!/usr/bin/env node
// brickctl: the command-line client of a brickd agent's control API, and the reference
// provisioner. This file is the entry: it parses the line, builds the context (socket,
// --json, --timeout), runs the command, prints any error (a line for people, JSON with
// --json) and exits with the code of exit.ts. The commands live in commands.ts.
import { commandHelp, GLOBAL_OPTIONS, parseCommandLine, usageLine, type CommandSpec } from './args.js';
import { COMMANDS, type Context } from './commands.js';
import { CliError, EXIT, EXIT_CODE_HELP } from './exit.js';
import { parseDuration } from './format.js';
import { AgentClient } from './rpc.js';
import { VERSION } from '../version.js';

export const DEFAULT_SOCKET = '/run/brickd/control.sock';
const DEFAULT_TIMEOUT_MS = 30_000;

function overview(): string {
  const groups = new Map<string, Array<CommandSpec<Context>>>();
  for (const c of COMMANDS) groups.set(c.words[0]!, [...(groups.get(c.words[0]!) ?? []), c]);
  const optionText = (n: string, value: string | undefined) => `--${n}${value ? ` ${value}` : ''}`;
  const width = Math.max(...COMMANDS.map((c) => c.words.join(' ').length), ...Object.entries(GLOBAL_OPTIONS).map(([n, o]) => optionText(n, o.value).length)) + 2;
  const lines = [...groups.values()].flatMap((cs) => cs.map((c) => `  ${c.words.join(' ').padEnd(width)}${c.summary.split('. ')[0]!.replace(/\.$/, '')}`));
  const globals = Object.entries(GLOBAL_OPTIONS).map(([n, o]) => `  ${optionText(n, o.type === 'string' ? o.value : undefined).padEnd(width)}${o.help}`);
  return [
    `brickctl ${VERSION}: drive brickd agents through their control socket.`,
    '',
    'usage: brickctl [--socket PATH] [--json] [--timeout DURATION] <command> [arguments]',
    '       brickctl <command> --help',
    '',
    'Commands:',
    ...lines,
    '',
    'Global options (anywhere on the line):',
    ...globals,
    '',
    'Mutating calls carry a request id and are retried once with the same id if the agent',
    'is unavailable or does not answer in time, so a retry never acts twice.',
    '',
    EXIT_CODE_HELP,
  ].join('\n');
}

function groupHelp(group: string): string {
  const cs = COMMANDS.filter((c) => c.words[0] === group);
  return [`brickctl ${group} commands:`, '', ...cs.map((c) => `  ${usageLine(c as CommandSpec<unknown>)}\n      ${c.summary}`), '', 'brickctl <command> --help for details.'].join('\n');
}

function writeError(json: boolean, err: CliError): void {
  if (json) {
    const error = { reason: err.reason, message: err.message, exitCode: err.exitCode, ...(err.status ? { status: err.status } : {}) };
    process.stderr.write(JSON.stringify({ error }) + '\n');
  } else {
    process.stderr.write(`brickctl: ${err.message}\n`);
  }
}

async function main(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === 'version')) {
    process.stdout.write(`brickctl ${VERSION}\n`);
    return EXIT.OK;
  }
  if (argv[0] === 'help') argv = [...argv.slice(1), '--help'];
  let client: AgentClient | undefined;
  // A command that handles Ctrl-C itself (events) registers here; any other ends with 130.
  const interruptHandlers: Array<() => void> = [];
  try {
    const parsed = parseCommandLine(argv, COMMANDS);
    if (parsed.values.help) {
      const text = parsed.command ? commandHelp(parsed.command as CommandSpec<unknown>) : parsed.group.length ? groupHelp(parsed.group[0]!) : overview();
      // Asked for: stdout and 0. No command named: the same help as a usage error.
      (parsed.incomplete ? process.stderr : process.stdout).write(text + '\n');
      return parsed.incomplete ? EXIT.USAGE : EXIT.OK;
    }
    const command = parsed.command!;
    const timeoutText = typeof parsed.values.timeout === 'string' ? parsed.values.timeout : undefined;
    let timeoutMs = DEFAULT_TIMEOUT_MS;
    if (timeoutText !== undefined) {
      try {
        timeoutMs = parseDuration(timeoutText, '--timeout');
      } catch (err) {
        throw new CliError(EXIT.USAGE, 'USAGE', (err as Error).message);
      }
    }
    const socket = (typeof parsed.values.socket === 'string' ? parsed.values.socket : undefined) ?? process.env.BRICKD_SOCKET ?? DEFAULT_SOCKET;
    if (!socket) throw new CliError(EXIT.USAGE, 'USAGE', '--socket: expected a path');
    const ctx: Context = {
      socket,
      json,
      timeoutMs,
      waitTimeoutMs: timeoutText !== undefined ? timeoutMs : 0,
      stdout: process.stdout,
      stderr: process.stderr,
      client: () => (client ??= new AgentClient(socket, { timeoutMs })),
      onInterrupt: (handler) => interruptHandlers.push(handler),
    };
    const stop = () => {
      if (interruptHandlers.length === 0) process.exit(130);
      for (const handler of interruptHandlers) handler();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
    return await command.run(ctx, parsed.args, parsed.values);
  } catch (err) {
    const e = err instanceof CliError ? err : new CliError(EXIT.FAILURE, 'INTERNAL', `unexpected error: ${(err as Error)?.stack ?? String(err)}`);
    writeError(json, e);
    return e.exitCode;
  } finally {
    client?.close();
  }
}

// A reader that goes away early (`brickctl events | head -1`) is not an error of ours.
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(EXIT.OK);
    throw err;
  });
}

const code = await main(process.argv.slice(2));
// Let stdout and stderr drain (they are asynchronous when piped) before leaving.
process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
