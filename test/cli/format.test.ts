// brickctl's formatting and parsing helpers (src/cli/format.ts) and its command-line parser
// (src/cli/args.ts): sizes, durations, tables, the progress display, global options anywhere,
// and usage errors that name what is wrong.
import t from 'tap';
import { parseCommandLine, type CommandSpec } from '../../src/cli/args.js';
import { CliError, EXIT } from '../../src/cli/exit.js';
import { formatBytes, keyValues, parseDuration, parseSize, progressBar, ProgressDisplay, table } from '../../src/cli/format.js';

t.test('sizes', async (t) => {
  t.equal(parseSize('10GiB'), 10 * 2 ** 30);
  t.equal(parseSize('10G'), 10 * 2 ** 30, 'K/M/G/T are binary, as in the agent config');
  t.equal(parseSize('512mib'), 512 * 2 ** 20);
  t.equal(parseSize('1.5KiB'), 1536);
  t.equal(parseSize('4096'), 4096);
  t.equal(parseSize(' 3 MiB '), 3 * 2 ** 20);
  t.throws(() => parseSize('10GB', '--size'), { name: 'RangeError', message: /--size: expected a size like 1073741824, 512MiB or 10GiB, got "10GB"/ });
  t.throws(() => parseSize('-1'), RangeError);
  t.throws(() => parseSize('99999999TiB'), { message: /too large/ });
  t.equal(formatBytes(0), '0 B');
  t.equal(formatBytes(1023), '1023 B');
  t.equal(formatBytes(1536), '1.5 KiB');
  t.equal(formatBytes(64 * 2 ** 20), '64 MiB');
  t.equal(formatBytes(320 * 2 ** 20), '320 MiB');
  t.equal(formatBytes(10 * 2 ** 30), '10 GiB');
  t.equal(formatBytes(2 ** 50), '1 PiB');
});

t.test('durations', async (t) => {
  t.equal(parseDuration('30s'), 30_000);
  t.equal(parseDuration('500ms'), 500);
  t.equal(parseDuration('2m'), 120_000);
  t.equal(parseDuration('1h'), 3_600_000);
  t.equal(parseDuration('5'), 5000, 'a plain number is seconds');
  t.equal(parseDuration('0.5'), 500);
  t.throws(() => parseDuration('0s', '--timeout'), { message: /--timeout: must be more than zero/ });
  t.throws(() => parseDuration('soon', '--timeout'), { message: /--timeout: expected a duration like 30s, 500ms or 2m, got "soon"/ });
});

t.test('tables and key/value blocks', async (t) => {
  t.equal(
    table(['VOLUME', 'SIZE', 'PEERS'], [
      ['v1', '10 GiB', 'a=1:2,b=3:4'],
      ['longer-name', '1 MiB', ''],
    ]),
    'VOLUME       SIZE    PEERS\nv1           10 GiB  a=1:2,b=3:4\nlonger-name  1 MiB   -',
  );
  t.equal(table(['A', 'B'], []), 'A  B', 'an empty table keeps its header');
  t.equal(table(['A'], [['two\nlines']]), 'A\ntwo lines');
  t.equal(keyValues([['node id', 'n1'], ['zone', ''], ['count', 3]]), 'node id:  n1\nzone:     -\ncount:    3');
});

t.test('progress: a bar on a terminal, plain lines elsewhere', async (t) => {
  t.equal(progressBar(0.4, 10), '[####------]');
  t.equal(progressBar(2, 4), '[####]');
  t.equal(progressBar(Number.NaN, 4), '[----]');

  const piped: string[] = [];
  const plain = new ProgressDisplay({ write: (s: string) => piped.push(s) });
  plain.update({ label: 'scrub v1', state: 'running', progress: 0.1, message: '' });
  plain.update({ label: 'scrub v1', state: 'running', progress: 0.1, message: '' });
  plain.update({ label: 'scrub v1', state: 'succeeded', progress: 1, message: 'done' });
  plain.finish();
  t.same(piped, ['scrub v1: running 10%\n', 'scrub v1: succeeded 100% done\n'], 'a line per change, no carriage returns');

  const tty: string[] = [];
  const bar = new ProgressDisplay({ write: (s: string) => tty.push(s), isTTY: true, columns: 80 });
  bar.update({ label: 'adopt-device /dev/sdb', state: 'running', progress: 0.5, message: 'formatting' });
  bar.finish();
  t.equal(tty[0], '\r\x1b[K[###############---------------]  50% adopt-device /dev/sdb (formatting)');
  t.equal(tty[1], '\n', 'the finished bar leaves a fresh line');
});

t.test('command line: commands, arguments, options', async (t) => {
  const ran: string[] = [];
  const commands: Array<CommandSpec<null>> = [
    { words: ['volume', 'create'], args: [{ name: 'id' }], options: { size: { type: 'string', required: true, help: '' }, peer: { type: 'string', multiple: true, help: '' } }, summary: '', run: async () => (ran.push('create'), 0) },
    { words: ['volume', 'list'], args: [], options: {}, summary: '', run: async () => 0 },
    { words: ['events'], args: [], options: { wait: { type: 'boolean', help: '' } }, summary: '', run: async () => 0 },
  ];
  const usage = (argv: string[], message: RegExp) => t.throws(() => parseCommandLine(argv, commands), { constructor: CliError, exitCode: EXIT.USAGE, message }, argv.join(' '));

  const p = parseCommandLine(['--json', 'volume', '--socket', '/s', 'create', 'v1', '--size', '1G', '--peer', 'a=h:1', '--peer=b=h:2'], commands);
  t.same(p.command?.words, ['volume', 'create'], 'global options anywhere, even between command words');
  t.same(p.args, ['v1']);
  t.same(p.values, { json: true, socket: '/s', size: '1G', peer: ['a=h:1', 'b=h:2'] });
  t.same(parseCommandLine(['--socket', 'volume', 'volume', 'list'], commands).command?.words, ['volume', 'list'], 'an option value is never a command word');

  usage(['volume', 'create', 'v1'], /volume create: --size is required; usage: brickctl volume create <id> --size VALUE \[--peer VALUE\]\.\.\./);
  usage(['volume', 'create', '--size', '1G'], /volume create: missing <id>/);
  usage(['volume', 'list', 'extra'], /volume list: unexpected argument "extra"/);
  usage(['volume', 'list', '--wait'], /volume list: Unknown option '--wait'/);
  usage(['volume', 'frob'], /unknown command "volume frob"; try: volume create, volume list/);
  usage(['frob'], /unknown command "frob"; commands: volume create, volume list, events/);
  t.same(parseCommandLine([], commands), { group: [], args: [], values: { help: true }, incomplete: true }, 'no command: help as a usage error');
  t.same(parseCommandLine(['volume'], commands).incomplete, true);
  t.same(parseCommandLine(['volume', '--help'], commands), { group: ['volume'], args: [], values: { help: true } });
  t.same(parseCommandLine(['volume', 'create', '-h'], commands).values, { help: true }, 'help needs no required option');
  t.same(ran, [], 'parsing runs nothing');
});
