// Damage on purpose: flip one byte of a file in place (through the page cache, so the store
// sees it at once), as a bad sector or a stray write would.
import { open } from 'node:fs/promises';

export async function flipByte(file: string, offset: number): Promise<void> {
  const handle = await open(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    await handle.read(b, 0, 1, offset);
    b[0] = b[0]! ^ 0x20;
    await handle.write(b, 0, 1, offset);
  } finally {
    await handle.close();
  }
}
