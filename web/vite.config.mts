// The console's build: web/ -> dist/web, served by the api at /console/ (src/app.ts). Runs offline from npm packages.
import { resolve } from 'node:path';
import { defineConfig } from 'vite';

export default defineConfig({
  root: resolve(import.meta.dirname),
  base: '/console/',
  logLevel: 'warn',
  build: {
    outDir: resolve(import.meta.dirname, '../dist/web'),
    emptyOutDir: true,
    target: 'es2022',
    // One small bundle: no source maps shipped, no chunk warnings for uPlot.
    sourcemap: false,
    chunkSizeWarningLimit: 200,
  },
  oxc: { jsx: { runtime: 'automatic', importSource: 'preact' } },
});
