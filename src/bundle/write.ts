import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { BundleFile } from './bundle';

/** Writes the bundle's files under `dir` (made if missing), each with its mode; `progress` hears one line per file. */
export async function writeBundle(dir: string, files: BundleFile[], progress: (line: string) => void = () => {}): Promise<string[]> {
  const root = resolve(dir);
  const written: string[] = [];
  for (const f of files) {
    const path = join(root, f.path);
    if (!path.startsWith(`${root}/`)) throw new Error(`bundle file ${f.path} lies outside ${root}`);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, f.content, { mode: f.mode });
    await chmod(path, f.mode);
    written.push(path);
    progress(`wrote ${f.path} (${Buffer.byteLength(f.content)} bytes, mode ${f.mode.toString(8)})`);
  }
  return written;
}
