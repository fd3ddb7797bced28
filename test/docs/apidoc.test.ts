// The control API reference (docs/control-api.md) is generated from the .proto comments:
// this fails when someone changes the contract without regenerating it.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import t from 'tap';
import { renderControlApi } from '../../scripts/proto-doc.mjs';

t.test('docs/control-api.md matches proto/brickd/v1/control.proto', async (t) => {
  const committed = await readFile(path.resolve(import.meta.dirname, '../../docs/control-api.md'), 'utf8');
  t.equal(committed, renderControlApi(), 'run `node scripts/proto-doc.mjs` after changing the .proto');
  t.match(committed, /\| `AdoptDevice` \|/);
});
