// The built console (web/ bundled by Vite into dist/web), served by the api at /console/ from memory: a handful of
// files read once at boot, with their content types, a strict CSP, and immutable caching for the hashed assets.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { extname, join, relative, resolve } from 'node:path';

/** The console's policy: its own scripts, styles and API only (no CDN, no inline script). */
export const CONSOLE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
};

export interface ConsoleFile {
  body: Buffer;
  type: string;
  headers: Record<string, string>;
}

/** dist/web when it holds a build, else null. */
export function consoleRoot(): string | null {
  // From src/ (tests) the build is ../dist/web; from dist/src/ it is ../web (never the source web/, whose index.html is unbuilt).
  for (const dir of [resolve(__dirname, '../dist/web'), resolve(__dirname, '../web')])
    if (dir.endsWith('dist/web') && existsSync(resolve(dir, 'index.html'))) return dir;
  return null;
}

/** Every file of the build by its path under /console/ ('' is index.html). */
export function loadConsole(root: string): Map<string, ConsoleFile> {
  const files = new Map<string, ConsoleFile>();
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const path = join(dir, name);
      if (statSync(path).isDirectory()) {
        walk(path);
        continue;
      }
      const rel = relative(root, path).split('\\').join('/');
      const hashed = rel.startsWith('assets/');
      files.set(rel, {
        body: readFileSync(path),
        type: TYPES[extname(name)] ?? 'application/octet-stream',
        headers: {
          'content-security-policy': CONSOLE_CSP,
          'x-content-type-options': 'nosniff',
          'referrer-policy': 'no-referrer',
          // Hashed names change with their content; index.html must be fetched again to find new ones.
          'cache-control': hashed ? 'public, max-age=31536000, immutable' : 'no-cache',
        },
      });
    }
  };
  walk(root);
  const index = files.get('index.html');
  if (index) files.set('', index);
  return files;
}
