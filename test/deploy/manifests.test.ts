// deploy/kubernetes/: every manifest validates against the Kubernetes API schemas and has no
// unknown field, the kustomization lists every file, the DaemonSet has what a storage agent
// needs, and the manifests agree with each other, with the agent's config loader and with
// the image. Deliberately broken copies prove that each check can fail.
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { loadConfig, parseListenAddress } from '../../src/agent/config.js';
import { loadYaml, REPO, schemaErrors, strictFieldErrors, validateManifests, type KubeObject, type Manifest } from '../helpers/kubernetes.js';
import { tempDir } from '../helpers/loop.js';

const DIR = path.join(REPO, 'deploy', 'kubernetes');

/* eslint-disable @typescript-eslint/no-explicit-any -- manifests are untyped YAML */
type Any = any;

async function loadAll(): Promise<{ files: string[]; kustomization: Any; manifests: Manifest[] }> {
  const files = (await readdir(DIR)).filter((f) => /\.ya?ml$/.test(f)).sort();
  const kustomizationFile = files.find((f) => f === 'kustomization.yaml');
  if (!kustomizationFile) throw new Error('no kustomization.yaml');
  const [kustomization] = await loadYaml(path.join(DIR, kustomizationFile));
  const manifests: Manifest[] = [];
  for (const f of files.filter((f) => f !== kustomizationFile)) manifests.push(...(await loadYaml(path.join(DIR, f))));
  return { files, kustomization: kustomization!.object, manifests };
}

function one(manifests: Manifest[], kind: string): Any {
  const found = manifests.filter((m) => m.object.kind === kind);
  if (found.length !== 1) throw new Error(`expected one ${kind}, found ${found.length}`);
  return found[0]!.object;
}

const clone = <T>(o: T): T => structuredClone(o);

t.test('every manifest validates: schema and no unknown field', async (t) => {
  const { manifests } = await loadAll();
  t.same(
    manifests.map((m) => m.object.kind).sort(),
    ['ConfigMap', 'DaemonSet', 'Namespace', 'Secret', 'ServiceAccount'],
    'the manifests this slice ships',
  );
  t.same(await validateManifests(manifests), [], 'no errors');
});

t.test('the kustomization lists every manifest, and only those', async (t) => {
  const { files, kustomization, manifests } = await loadAll();
  t.equal(kustomization.apiVersion, 'kustomize.config.k8s.io/v1beta1');
  t.equal(kustomization.kind, 'Kustomization');
  t.same([...kustomization.resources].sort(), files.filter((f) => f !== 'kustomization.yaml'), 'resources = the YAML files here');
  const namespace = one(manifests, 'Namespace').metadata.name;
  t.equal(kustomization.namespace, namespace, 'kustomize namespace = the Namespace manifest');
  for (const m of manifests.filter((m) => m.object.kind !== 'Namespace')) {
    t.equal(m.object.metadata?.namespace, namespace, `${m.object.kind}/${m.object.metadata?.name} in ${namespace}`);
  }
  const image = one(manifests, 'DaemonSet').spec.template.spec.containers[0].image as string;
  t.ok(
    kustomization.images.some((i: Any) => i.name === image.split(':')[0]),
    'the kustomize image override names the DaemonSet image',
  );
});

t.test('the DaemonSet is a privileged host-network storage agent', async (t) => {
  const { manifests } = await loadAll();
  const ds = one(manifests, 'DaemonSet');
  const pod = ds.spec.template.spec;
  const container = pod.containers.find((c: Any) => c.name === 'brickd');
  t.ok(container, 'a brickd container');
  t.same(ds.spec.selector.matchLabels, Object.fromEntries(Object.entries(ds.spec.template.metadata.labels).filter(([k]) => k in ds.spec.selector.matchLabels)), 'the selector matches the pod labels');

  t.equal(container.securityContext.privileged, true, 'privileged');
  t.equal(pod.hostNetwork, true, 'host network');
  t.equal(pod.dnsPolicy, 'ClusterFirstWithHostNet');

  const volume = (name: string) => pod.volumes.find((v: Any) => v.name === name);
  const mountOf = (hostPath: string) => {
    const v = pod.volumes.find((v: Any) => v.hostPath?.path === hostPath);
    return v && container.volumeMounts.find((m: Any) => m.name === v.name);
  };
  t.equal(mountOf('/dev')?.mountPath, '/dev', '/dev from the host');
  t.equal(mountOf('/run/brickd')?.mountPath, '/run/brickd', '/run/brickd from the host');
  t.equal(mountOf('/var/lib/brickd')?.mountPath, '/var/lib/brickd', 'the state dir from the host');
  t.equal(mountOf('/var/lib/brickd')?.mountPropagation, 'Bidirectional', 'brick mounts reach the host (survive a container restart)');
  t.equal(mountOf('/var/lib/kubelet')?.mountPath, '/var/lib/kubelet', 'the kubelet dir');
  t.equal(mountOf('/var/lib/kubelet')?.mountPropagation, 'Bidirectional', 'FUSE mounts reach the pods');

  t.ok(Object.keys(pod.nodeSelector).length > 0, 'a node selector for storage nodes');
  const selectorKey = Object.keys(pod.nodeSelector)[0];
  t.ok(pod.tolerations.some((tol: Any) => tol.key === selectorKey && tol.operator === 'Exists'), 'tolerates the storage-node taint');

  t.ok(container.resources.requests.cpu && container.resources.requests.memory, 'cpu and memory requests');
  t.ok(container.resources.limits.memory, 'a memory limit');

  // Probes: the agent's own health endpoint on the node's loopback, at the port it is configured with.
  const config = JSON.parse(one(manifests, 'ConfigMap').data['config.json']);
  const listen = parseListenAddress(config.metricsAddress);
  t.same(listen, { host: '127.0.0.1', port: listen?.port }, 'the agent listens on loopback');
  const portOf = (port: number | string) => (typeof port === 'number' ? port : container.ports.find((p: Any) => p.name === port)?.containerPort);
  for (const [probe, probePath] of [['startupProbe', '/healthz'], ['livenessProbe', '/healthz'], ['readinessProbe', '/readyz']] as const) {
    const get = container[probe]?.httpGet;
    t.equal(get?.path, probePath, `${probe} ${probePath}`);
    t.equal(get?.host, '127.0.0.1', `${probe} on loopback`);
    t.equal(portOf(get?.port), listen?.port, `${probe} on the agent's port`);
  }

  // References resolve to the other manifests.
  t.equal(pod.serviceAccountName, one(manifests, 'ServiceAccount').metadata.name);
  t.equal(pod.automountServiceAccountToken, false, 'no API token in a privileged pod');
  t.equal(volume('config').configMap.name, one(manifests, 'ConfigMap').metadata.name);
  t.equal(container.volumeMounts.find((m: Any) => m.name === 'config').mountPath, '/etc/brickd', 'config.json lands at /etc/brickd/config.json');
  t.equal(volume('replication-secret').secret.secretName, one(manifests, 'Secret').metadata.name);
  t.equal(volume('replication-secret').secret.defaultMode, 0o400, 'the secret is readable by root only (YAML 1.1 octal, as Kubernetes reads it)');
  t.equal(one(manifests, 'Namespace').metadata.labels['pod-security.kubernetes.io/enforce'], 'privileged');
});

t.test('config.json loads with the agent\'s own loader and matches the mounts', async (t) => {
  const { manifests } = await loadAll();
  const dir = await tempDir(t);
  const file = path.join(dir, 'config.json');
  await writeFile(file, one(manifests, 'ConfigMap').data['config.json']);
  const config = await loadConfig({ file });
  t.equal(config.stateDir, '/var/lib/brickd');
  t.equal(config.controlSocket, '/run/brickd/control.sock');
  t.equal(config.metricsAddress, '127.0.0.1:9464');
  t.equal(config.embedded, 'off', 'no loop-file disks on a real node');
  t.ok(config.allow.length > 0, 'an allowlist to edit');
  t.ok(config.allow.every((g) => g.includes('EDIT-ME')), 'the placeholder allowlist is marked, and matches no real disk');
  const secret = one(manifests, 'Secret');
  t.ok(Object.values(secret.stringData as Record<string, string>).every((v) => v.startsWith('REPLACE-ME')), 'the secret is a marked placeholder');
  const secretText = await readFile(path.join(DIR, 'secret.yaml'), 'utf8');
  t.match(secretText, /REPLACE BEFORE DEPLOYING/);
});

t.test('broken manifests fail validation', async (t) => {
  const { manifests } = await loadAll();
  const ds = one(manifests, 'DaemonSet') as KubeObject & Any;

  const typo = clone(ds);
  typo.spec.template.spec.hostNetwrok = typo.spec.template.spec.hostNetwork;
  delete typo.spec.template.spec.hostNetwork;
  const deepTypo = clone(ds);
  deepTypo.spec.template.spec.containers[0].volumeMounts[0].mountPropogation = 'Bidirectional';
  const badEnum = clone(ds);
  badEnum.spec.template.spec.containers[0].volumeMounts[0].mountPropagation = 'Sideways';
  // One in-memory compilation for the three (each costs a second or two).
  const [typoErrors, deepTypoErrors, badEnumErrors] = strictFieldErrors([typo, deepTypo, badEnum]);
  t.same(await schemaErrors(typo), [], 'a misspelt key passes the schema (it allows unknown fields)...');
  t.match(typoErrors, [/'"?hostNetwrok"?' does not exist in type/], '...and the strict check names it');
  t.match(deepTypoErrors, [/mountPropogation/], 'at any depth');
  t.match(badEnumErrors, [/"Sideways"/], 'a value outside an enum fails (the typed check knows the enums)');

  const wrongType = clone(ds);
  wrongType.spec.template.spec.hostNetwork = 'yes please';
  t.match(await schemaErrors(wrongType), [/hostNetwork must be boolean/], 'a wrong type fails the schema');

  const noName = clone(ds);
  delete noName.spec.template.spec.containers[0].name;
  t.match(await schemaErrors(noName), [/containers\/0 must have required property name/], 'a missing required field fails');

  const badKind = { ...clone(ds), kind: 'DaemonSett' };
  t.match(await schemaErrors(badKind), [/unknown kind DaemonSett/]);
  const badVersion = { ...clone(ds), apiVersion: 'apps/v1beta7' };
  t.match(await schemaErrors(badVersion), [/unknown apiVersion apps\/v1beta7/]);

  // And validateManifests reports through the same path the real files take.
  const errors = await validateManifests([{ file: path.join(DIR, 'daemonset.yaml'), index: 0, object: typo }]);
  t.match(errors, [/deploy\/kubernetes\/daemonset\.yaml#0 DaemonSet\/brickd-agent: field: .*hostNetwrok/]);
});

t.test('broken YAML fails to load', async (t) => {
  const dir = await tempDir(t);
  const bad = path.join(dir, 'bad.yaml');
  await writeFile(bad, 'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n   namespace: y\n');
  await t.rejects(loadYaml(bad), /bad\.yaml: /);
  await writeFile(bad, 'just a string\n');
  await t.rejects(loadYaml(bad), /not a mapping/);
  await writeFile(bad, 'metadata: {}\n');
  await t.rejects(loadYaml(bad), /no apiVersion\/kind/);
});
