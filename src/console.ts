// Where the api finds the built console (web/ bundled by Vite into dist/web), from the source tree or from dist/.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';

/** The console's policy: its own scripts, styles and API only (no CDN, no inline script). */
export const CONSOLE_CSP =
  "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/** dist/web when it holds a build, else null. */
export function consoleRoot(): string | null {
  for (const dir of [resolve(__dirname, '../web'), resolve(__dirname, '../dist/web')])
    if (existsSync(resolve(dir, 'index.html'))) return dir;
  return null;
}
