// The container image without Docker (none runs here or in CI): deploy/install-image-deps.sh
// parses, lists every package the agent's tools and native libraries come from, and each of
// them is installable on the image's Debian release (apt-cache); deploy/Dockerfile has a
// build and a run-time stage on the same base, installs through that script, carries no
// build tools into the final image, and its run-time COPY list, laid out in a temp dir
// exactly as the image would hold it, is enough to start the agent's entry point.
import { execFile } from 'node:child_process';
import { cp, mkdir, readFile, realpath, stat, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { TOOL_PACKAGES } from '../../src/exec.js';
import { REPO } from '../helpers/kubernetes.js';
import { tempDir } from '../helpers/loop.js';

const exec = promisify(execFile);
const SCRIPT = path.join(REPO, 'deploy', 'install-image-deps.sh');
const DOCKERFILE = path.join(REPO, 'deploy', 'Dockerfile');

/** Run a command; resolve with its exit code and output instead of throwing on a non-zero exit. */
async function run(cmd: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await exec(cmd, args, { cwd: REPO });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}

async function listedPackages(script = SCRIPT): Promise<string[]> {
  const { code, stdout } = await run('bash', [script, '--list']);
  if (code !== 0) throw new Error(`${script} --list exited ${code}`);
  return stdout.split('\n').filter(Boolean);
}

/** Why the apt checks cannot run here, or false. */
async function notImageRelease(): Promise<string | false> {
  const release = await readFile('/etc/os-release', 'utf8').then((s) => /^VERSION_CODENAME=(.*)$/m.exec(s)?.[1], () => undefined);
  const script = await readFile(SCRIPT, 'utf8');
  const image = /^IMAGE_DEBIAN_RELEASE=(\S+)$/m.exec(script)?.[1];
  return release === image ? false : `apt answers for this machine's release (${release ?? 'not Debian'}), the image is Debian ${image}`;
}

/** The Debian package that ships a file. With merged /usr a package may have registered the
 * path under /lib or under /usr/lib, and the loader may name either, or a symlink to it. */
async function packageOf(file: string): Promise<string | undefined> {
  const real = await realpath(file);
  for (const candidate of new Set([file, real, file.replace(/^\/usr\//, '/'), real.replace(/^\/usr\//, '/'), '/usr' + file])) {
    const owner = await run('dpkg-query', ['--search', candidate]);
    const pkg = owner.code === 0 ? /^([^:,\s]+)/.exec(owner.stdout)?.[1] : undefined;
    if (pkg) return pkg;
  }
  return undefined;
}

interface Instruction {
  op: string;
  args: string;
}

/** Dockerfile instructions grouped by stage (line continuations joined, comments dropped). */
function parseDockerfile(text: string): { args: Record<string, string>; stages: Array<{ from: string; name?: string; body: Instruction[] }> } {
  const logical: string[] = [];
  let current = '';
  for (const line of text.split('\n')) {
    if (/^\s*#/.test(line) && current === '') continue;
    if (/\\\s*$/.test(line)) {
      current += line.replace(/\\\s*$/, ' ');
      continue;
    }
    current += line;
    if (current.trim()) logical.push(current.trim());
    current = '';
  }
  const args: Record<string, string> = {};
  const stages: Array<{ from: string; name?: string; body: Instruction[] }> = [];
  for (const l of logical) {
    const m = /^(\w+)\s+(.*)$/s.exec(l);
    if (!m) continue;
    const op = m[1]!.toUpperCase();
    const rest = m[2]!.replace(/\s+/g, ' ');
    if (op === 'FROM') {
      const [from, as, name] = rest.split(' ');
      stages.push({ from: from!, ...(as?.toUpperCase() === 'AS' && name ? { name } : {}), body: [] });
    } else if (stages.length === 0 && op === 'ARG') {
      const [k, v] = rest.split('=');
      args[k!] = v ?? '';
    } else stages.at(-1)?.body.push({ op, args: rest });
  }
  return { args, stages };
}

t.test('install-image-deps.sh parses and refuses what it does not know', async (t) => {
  t.equal((await run('bash', ['-n', SCRIPT])).code, 0, 'bash -n');
  t.ok(((await stat(SCRIPT)).mode & 0o111) !== 0, 'executable');
  const usage = await run('bash', [SCRIPT]);
  t.equal(usage.code, 2, 'no mode: usage, and nothing installed');
  t.match(usage.stderr, /usage: .* --install \| --list \| --check/);
});

t.test('the image packages cover every tool the agent runs and every library it loads', async (t) => {
  const packages = await listedPackages();
  for (const [tool, pkg] of Object.entries(TOOL_PACKAGES)) t.ok(packages.includes(pkg), `${tool} comes from ${pkg}, which the image installs`);
  const noDpkg = (await run('dpkg-query', ['--version'])).code !== 0;
  t.test('shared libraries of the native code, by the Debian package that ships them', { skip: noDpkg ? 'no dpkg on this machine' : false }, async (t) => {
    // Node's own libraries are in the base image already.
    const base = new Set(['libc6', 'libstdc++6', 'libgcc-s1']);
    const binaries = [path.join(REPO, 'build', 'Release', 'brickd_native.node'), path.join(REPO, 'node_modules', 'fuse-native', 'prebuilds', 'linux-x64', 'node.napi.node')];
    for (const binary of binaries) {
      const ldd = await run('ldd', [binary]);
      t.equal(ldd.code, 0, `ldd ${path.relative(REPO, binary)}`);
      for (const [, lib, file] of ldd.stdout.matchAll(/^\s*(\S+) => (\/\S+)/gm)) {
        const pkg = await packageOf(file!);
        t.ok(pkg && (base.has(pkg) || packages.includes(pkg)), `${path.basename(binary)} loads ${lib} from ${pkg ?? '(no package)'}: installed in the image`);
      }
    }
  });
});

t.test('--check: every package is installable on the image release, and a bad list fails', { skip: await notImageRelease() }, async (t) => {
  const ok = await run(SCRIPT, ['--check']);
  t.equal(ok.code, 0, `--check: ${ok.stderr.trim() || ok.stdout.trim()}`);
  t.match(ok.stdout, /installable on Debian bookworm/);

  // The same script with a misspelt and a purely virtual package name must fail, naming both.
  const dir = await tempDir(t);
  const broken = path.join(dir, 'install-image-deps.sh');
  const text = await readFile(SCRIPT, 'utf8');
  t.match(text, /^PACKAGES=\($/m);
  await writeFile(broken, text.replace(/^PACKAGES=\($/m, 'PACKAGES=(\n  xfsprogz\n  awk'), { mode: 0o755 });
  t.same((await listedPackages(broken)).slice(0, 2), ['xfsprogz', 'awk']);
  const bad = await run(broken, ['--check']);
  t.equal(bad.code, 1, 'a package that does not exist fails the check');
  t.match(bad.stderr, /xfsprogz \(no such package\)/);
  t.match(bad.stderr, /awk \(no such package\)/, 'a virtual name is not a package');
});

t.test('Dockerfile: two stages on one base, the run-time stage from the script, no build tools', async (t) => {
  const { args, stages } = parseDockerfile(await readFile(DOCKERFILE, 'utf8'));
  t.equal(args.NODE_IMAGE, 'node:20-bookworm-slim', 'Node 20 on Debian bookworm slim');
  t.equal(stages.length, 2, 'build and run time');
  t.same(stages.map((s) => s.from), ['${NODE_IMAGE}', '${NODE_IMAGE}'], 'both stages on the same base');
  const script = await readFile(SCRIPT, 'utf8');
  t.ok(args.NODE_IMAGE?.includes(/^IMAGE_DEBIAN_RELEASE=(\S+)$/m.exec(script)![1]!), 'the script checks the release the image is built on');

  const [build, final] = stages as [(typeof stages)[0], (typeof stages)[0]];
  t.equal(build.name, 'build');
  const buildRun = build.body.filter((i) => i.op === 'RUN').map((i) => i.args).join(' ');
  t.match(buildRun, /npm ci/, 'npm ci in the build stage');
  t.match(buildRun, /libblkid-dev/, 'build deps in the build stage');
  // Every source the build stage copies exists in the repository.
  for (const i of build.body.filter((i) => i.op === 'COPY')) {
    const sources = i.args.split(' ').slice(0, -1);
    for (const s of sources) t.ok(await stat(path.join(REPO, s)).then(() => true, () => false), `build COPY ${s} exists`);
  }

  const finalRun = final.body.filter((i) => i.op === 'RUN').map((i) => i.args);
  t.same(finalRun.length, 1, 'one RUN in the final stage');
  t.match(finalRun[0], /install-image-deps\.sh --install/, 'the final stage installs through the script');
  t.notMatch(finalRun.join(' '), /apt-get|g\+\+|\bmake\b|-dev\b|python3/, 'and nothing else: no build tools');
  t.ok(final.body.some((i) => i.op === 'COPY' && i.args.startsWith('deploy/install-image-deps.sh ')), 'the script is the repository\'s');

  const entry = final.body.find((i) => i.op === 'ENTRYPOINT');
  const argv = JSON.parse(entry!.args) as string[];
  t.equal(argv[0], 'node');
  t.same(argv.slice(-2), ['--config', '/etc/brickd/config.json'], 'config from /etc/brickd/config.json (the ConfigMap mount)');
  t.equal(final.body.find((i) => i.op === 'WORKDIR')?.args, '/opt/brickd');
});

t.test('the run-time COPY list, laid out as in the image, starts the agent entry point', async (t) => {
  const { stages } = parseDockerfile(await readFile(DOCKERFILE, 'utf8'));
  const final = stages[1]!;
  const workdir = final.body.find((i) => i.op === 'WORKDIR')!.args;
  const image = await tempDir(t, 'brickd-image-');
  const copies = final.body.filter((i) => i.op === 'COPY' && i.args.startsWith('--from=build '));
  t.ok(copies.length >= 4, 'package.json, node_modules, dist, the addon');
  for (const c of copies) {
    const [, from, to] = c.args.split(' ') as [string, string, string];
    t.ok(from.startsWith('/src/'), `${from} comes from the build stage's /src`);
    const source = path.join(REPO, from.slice('/src/'.length));
    const target = path.join(image, path.resolve(workdir, to).slice(workdir.length));
    await mkdir(path.dirname(target), { recursive: true });
    // node_modules is linked, not copied (it is large); the image holds its production part.
    if (path.basename(source) === 'node_modules') await symlink(source, target);
    else await cp(source, target, { recursive: true });
  }
  const entry = JSON.parse(final.body.find((i) => i.op === 'ENTRYPOINT')!.args) as string[];
  const script = path.join(image, entry[1]!.slice(workdir.length));
  const help = await run(process.execPath, [script, '--help']);
  t.equal(help.code, 0, `the entry point loads (addon, generated code, version): ${help.stderr.trim()}`);
  t.match(help.stdout, /usage: brickd/);
  // With no config file at the ConfigMap's path it must stop at once (if this machine has
  // one, running the entry point would start a real agent: not here).
  const configFile = entry.at(-1)!;
  if (await stat(configFile).then(() => true, () => false)) {
    t.comment(`not run: ${configFile} exists on this machine`);
    return;
  }
  const noConfig = await run(process.execPath, [script, ...entry.slice(2)]);
  t.equal(noConfig.code, 2, 'without the ConfigMap it stops with a configuration error');
  t.match(noConfig.stderr, /CONFIG_INVALID: cannot read config file \/etc\/brickd\/config\.json/);
});

t.test('the build context leaves host build output out', async (t) => {
  const ignore = (await readFile(path.join(REPO, 'deploy', 'Dockerfile.dockerignore'), 'utf8')).split('\n').map((l) => l.trim());
  for (const entry of ['**/node_modules', 'dist', 'build', '.git']) t.ok(ignore.includes(entry), `${entry} ignored`);
});
