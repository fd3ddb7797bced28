// brickctl's command line: a table of commands (words, positional arguments, options) and a
// parser on node:util parseArgs. Global options may appear anywhere on the line.
//
// Parsing is two passes: the first, lenient and with every option of every command, only
// finds where the command words are (an option's value is never taken for a command word);
// the second, strict, parses the line against the global options and that command's own,
// so an option of another command is an error that names it.
import { parseArgs } from 'node:util';
import { usageError } from './exit.js';

export interface OptionSpec {
  type: 'string' | 'boolean';
  multiple?: boolean;
  short?: string;
  /** Placeholder in help, e.g. SIZE. */
  value?: string;
  /** The command cannot run without it (checked by the parser, shown unbracketed in usage). */
  required?: boolean;
  help: string;
}

export interface ArgSpec {
  name: string;
  optional?: boolean;
}

export type OptionValues = Record<string, string | boolean | string[] | undefined>;

export interface CommandSpec<Ctx = unknown> {
  /** The command words, e.g. ['volume', 'create']. */
  words: string[];
  args: ArgSpec[];
  options: Record<string, OptionSpec>;
  summary: string;
  /** Extra help text after the options. */
  details?: string;
  run: (ctx: Ctx, args: string[], values: OptionValues) => Promise<number>;
}

export const GLOBAL_OPTIONS: Record<string, OptionSpec> = {
  socket: { type: 'string', value: 'PATH', help: 'control socket of the agent (default $BRICKD_SOCKET, else /run/brickd/control.sock)' },
  json: { type: 'boolean', help: 'machine output: one JSON document on stdout; errors as JSON on stderr' },
  timeout: { type: 'string', value: 'DURATION', help: 'deadline of each call, e.g. 30s, 500ms, 2m (default 30s); also bounds --wait' },
  help: { type: 'boolean', short: 'h', help: 'show help' },
};

export interface ParsedLine<Ctx> {
  command?: CommandSpec<Ctx>;
  /** Words that name a group but no command ("volume"), for help. */
  group: string[];
  /** No command was named (bare `brickctl` or `brickctl volume`): show help, but as a usage error. */
  incomplete?: boolean;
  args: string[];
  values: OptionValues;
}

/** The usage line of a command: "volume create <id> --size SIZE [--brick ID]...". */
export function usageLine(spec: CommandSpec<unknown>): string {
  const args = spec.args.map((a) => (a.optional ? `[<${a.name}>]` : `<${a.name}>`));
  const options = Object.entries(spec.options).map(([name, o]) => {
    const text = `--${name}${o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : ''}`;
    return `${o.required ? text : `[${text}]`}${o.multiple ? '...' : ''}`;
  });
  return ['brickctl', ...spec.words, ...args, ...options].join(' ');
}

/** Full help of one command. */
export function commandHelp(spec: CommandSpec<unknown>): string {
  const width = Math.max(...Object.entries({ ...spec.options, ...GLOBAL_OPTIONS }).map(([n, o]) => n.length + (o.type === 'string' ? (o.value ?? 'VALUE').length + 1 : 0))) + 4;
  const describe = (entries: Array<[string, OptionSpec]>) =>
    entries.map(([n, o]) => `  ${`--${n}${o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : ''}`.padEnd(width)}${o.help}${o.multiple ? ' (repeatable)' : ''}`).join('\n');
  const parts = [`usage: ${usageLine(spec)}`, '', spec.summary];
  if (Object.keys(spec.options).length > 0) parts.push('', 'Options:', describe(Object.entries(spec.options)));
  if (spec.details) parts.push('', spec.details);
  parts.push('', 'Global options:', describe(Object.entries(GLOBAL_OPTIONS)));
  return parts.join('\n');
}

function toParseArgsOptions(specs: Record<string, OptionSpec>, lenient: boolean) {
  return Object.fromEntries(
    Object.entries(specs).map(([name, o]) => [name, { type: o.type, ...(o.multiple || lenient ? { multiple: o.type === 'string' || Boolean(o.multiple) } : {}), ...(o.short ? { short: o.short } : {}) }]),
  );
}

/** Parse argv (without node and script) against the command table. Throws a usage CliError. */
export function parseCommandLine<Ctx>(argv: readonly string[], commands: ReadonlyArray<CommandSpec<Ctx>>): ParsedLine<Ctx> {
  const everyOption: Record<string, OptionSpec> = { ...GLOBAL_OPTIONS };
  for (const c of commands) Object.assign(everyOption, c.options);
  const loose = parseArgs({ args: [...argv], options: toParseArgsOptions(everyOption, true), strict: false, allowPositionals: true });
  const words = loose.positionals;

  // The longest run of leading words that names a command.
  let command: CommandSpec<Ctx> | undefined;
  for (const c of commands) {
    if (c.words.every((w, i) => words[i] === w) && (!command || c.words.length > command.words.length)) command = c;
  }
  const wantsHelp = Boolean(loose.values.help);
  if (!command) {
    const group = words.length > 0 && commands.some((c) => c.words[0] === words[0]) ? [words[0]!] : [];
    if (wantsHelp) return { group, args: [], values: { help: true } };
    if (words.length === 0 || (group.length === 1 && words.length === 1)) return { group, args: [], values: { help: true }, incomplete: true };
    const known = [...new Set(commands.map((c) => c.words.join(' ')))];
    const near = group.length ? known.filter((k) => k.startsWith(group[0]! + ' ')) : known;
    throw usageError(`unknown command ${JSON.stringify(words.slice(0, 2).join(' '))}; ${group.length ? 'try' : 'commands'}: ${near.join(', ')}`);
  }

  let strict;
  try {
    strict = parseArgs({ args: [...argv], options: toParseArgsOptions({ ...GLOBAL_OPTIONS, ...command.options }, false), strict: true, allowPositionals: true });
  } catch (err) {
    if (wantsHelp) return { command, group: [], args: [], values: { help: true } };
    const message = (err as Error).message.replace(/\. To specify a positional argument starting with a '-'.*$/s, '');
    throw usageError(`${command.words.join(' ')}: ${message}`);
  }
  const values = strict.values as OptionValues;
  const args = strict.positionals.slice(command.words.length);
  if (values.help) return { command, group: [], args, values };
  const required = command.args.filter((a) => !a.optional).length;
  if (args.length < required) throw usageError(`${command.words.join(' ')}: missing <${command.args[args.length]!.name}>; usage: ${usageLine(command as CommandSpec<unknown>)}`);
  if (args.length > command.args.length) throw usageError(`${command.words.join(' ')}: unexpected argument ${JSON.stringify(args[command.args.length])}; usage: ${usageLine(command as CommandSpec<unknown>)}`);
  const missing = Object.entries(command.options).filter(([name, o]) => o.required && values[name] === undefined).map(([name]) => `--${name}`);
  if (missing.length > 0) throw usageError(`${command.words.join(' ')}: ${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} required; usage: ${usageLine(command as CommandSpec<unknown>)}`);
  return { command, group: [], args, values };
}
