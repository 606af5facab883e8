// Headless Chromium for the console's browser tests: Debian's chromium (scripts/stack.sh installs it) driven by
// playwright-core, with screenshots written to test/artifacts/screenshots/ (gitignored) for a reviewer to look at.
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Browser, chromium, Page } from 'playwright-core';

export const SCREENSHOTS = resolve(__dirname, '../artifacts/screenshots');

/** CHROMIUM_PATH, else the Debian package's binary. */
export function chromiumPath(): string {
  const p = process.env.CHROMIUM_PATH ?? ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((x) => existsSync(x));
  if (!p || !existsSync(p)) throw new Error('chromium not found: `apt-get install chromium` (npm test does it) or set CHROMIUM_PATH');
  return p;
}

export function launch(): Promise<Browser> {
  // --no-sandbox: the tests run as root; the pages are our own.
  return chromium.launch({ executablePath: chromiumPath(), headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}

/** Prints the page's script errors, failed requests and console errors: what a failing browser test needs to show. */
export function watch(page: Page) {
  page.on('pageerror', (e) => process.stderr.write(`[page error] ${e.message}\n`));
  page.on('console', (m) => {
    if (m.type() === 'error') process.stderr.write(`[page console] ${m.text()}\n`);
  });
  page.on('response', (r) => {
    if (r.status() >= 400 && !r.url().includes('/playground/chat')) process.stderr.write(`[page request] ${r.status()} ${r.url()}\n`);
  });
  return page;
}

export async function screenshot(page: Page, name: string) {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}
