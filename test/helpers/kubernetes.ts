// Kubernetes manifests checked the way the API server would take them, without a cluster.
//
// Two checks, because each misses what the other catches:
// - schema: kubernetes-models' validator for the object's apiVersion/kind (types, required
//   fields, enums). Kubernetes' OpenAPI schemas allow unknown fields, so a misspelt key
//   (`hostNetwrok: true`) passes it and would be silently dropped by the API server.
// - strict fields: every object becomes an object literal typed with kubernetes-models'
//   TypeScript interface (IDaemonSet, ...), compiled in memory; TypeScript's excess-property
//   check then names each unknown key at any depth, as `kubectl apply --validate=strict` does.
//
// YAML is parsed as YAML 1.1, as Kubernetes parses it (so `defaultMode: 0400` is octal).
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import ts from 'typescript';
import { parseAllDocuments } from 'yaml';

export const REPO = path.resolve(import.meta.dirname, '../..');

export interface Manifest {
  file: string;
  /** Index of the document in its file. */
  index: number;
  object: KubeObject;
}

export interface KubeObject {
  apiVersion: string;
  kind: string;
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}

/** Every document of a YAML file; throws naming the file on a YAML error or a non-object document. */
export async function loadYaml(file: string): Promise<Manifest[]> {
  const text = await readFile(file, 'utf8');
  const docs = parseAllDocuments(text, { version: '1.1' });
  if (!Array.isArray(docs)) throw new Error(`${file}: no YAML documents`);
  const out: Manifest[] = [];
  docs.forEach((doc, index) => {
    if (doc.errors.length > 0) throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
    const object = doc.toJS() as unknown;
    if (object === null || object === undefined) return; // an empty document (trailing ---)
    if (typeof object !== 'object' || Array.isArray(object)) throw new Error(`${file}#${index}: not a mapping`);
    const o = object as KubeObject;
    if (typeof o.apiVersion !== 'string' || typeof o.kind !== 'string') throw new Error(`${file}#${index}: no apiVersion/kind`);
    out.push({ file, index, object: o });
  });
  return out;
}

/** The kubernetes-models module path of an apiVersion: "v1" → core, "apps/v1" → apps/v1. */
function modelModule(apiVersion: string): string {
  if (!/^([a-z0-9.-]+\/)?v\d+((alpha|beta)\d+)?$/.test(apiVersion)) throw new Error(`bad apiVersion ${JSON.stringify(apiVersion)}`);
  return `kubernetes-models/${apiVersion}`;
}

/** Schema errors of one object (empty when it validates). */
export async function schemaErrors(object: KubeObject): Promise<string[]> {
  let models: Record<string, unknown>;
  try {
    models = (await import(modelModule(object.apiVersion))) as Record<string, unknown>;
  } catch (err) {
    return [`unknown apiVersion ${object.apiVersion}: ${(err as Error).message}`];
  }
  const Model = models[object.kind] as (new (data: unknown) => { validate(): void }) | undefined;
  if (typeof Model !== 'function') return [`unknown kind ${object.kind} in ${object.apiVersion}`];
  try {
    new Model(object).validate();
    return [];
  } catch (err) {
    return [(err as Error).message];
  }
}

/**
 * Unknown-field (and type) errors of each object, by compiling them as typed literals in one
 * in-memory TypeScript program. Returns one list of messages per object, in order.
 */
export function strictFieldErrors(objects: readonly KubeObject[]): string[][] {
  // Virtual files inside the repository, so that `kubernetes-models` resolves from its
  // node_modules; they are never written to disk.
  const files = objects.map((_, i) => path.join(REPO, 'test', 'deploy', `__manifest_${i}__.ts`));
  const sources = new Map<string, string>();
  objects.forEach((object, i) => {
    const typePath = `${modelModule(object.apiVersion)}/${object.kind}`;
    sources.set(files[i]!, `import type { I${object.kind} as T } from '${typePath}';\nexport const manifest: T = ${JSON.stringify(object, null, 2)};\n`);
  });
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile: hostReadFile } = host;
  host.getSourceFile = (name, languageVersion, ...rest) => {
    const text = sources.get(name);
    return text !== undefined ? ts.createSourceFile(name, text, languageVersion, true) : getSourceFile.call(host, name, languageVersion, ...rest);
  };
  host.fileExists = (name) => sources.has(name) || fileExists.call(host, name);
  host.readFile = (name) => sources.get(name) ?? hostReadFile.call(host, name);
  const program = ts.createProgram(files, options, host);
  return files.map((file) =>
    ts.getPreEmitDiagnostics(program, program.getSourceFile(file)).map((d) => {
      const where = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : undefined;
      const text = ts.flattenDiagnosticMessageText(d.messageText, ' ');
      // The line of the offending key in the JSON rendering helps find it in the YAML.
      const line = where && d.file ? d.file.text.split('\n')[where.line]?.trim() : undefined;
      return line ? `${text} (at ${line})` : text;
    }),
  );
}

/** Schema and strict-field errors of each object, "file#index kind/name: message". */
export async function validateManifests(manifests: readonly Manifest[]): Promise<string[]> {
  const strict = strictFieldErrors(manifests.map((m) => m.object));
  const errors: string[] = [];
  for (const [i, m] of manifests.entries()) {
    const where = `${path.relative(REPO, m.file)}#${m.index} ${m.object.kind}/${m.object.metadata?.name ?? '?'}`;
    for (const e of await schemaErrors(m.object)) errors.push(`${where}: schema: ${e}`);
    for (const e of strict[i]!) errors.push(`${where}: field: ${e}`);
  }
  return errors;
}
