import { defineConfig, type Plugin } from 'vite';
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { gzipSync } from 'node:zlib';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

// The server (`openguild serve`) serves `dist/`; in development Vite proxies the API to it.
const api = process.env.OPENGUILD_URL ?? 'http://127.0.0.1:8080';

/** Writes a `.gz` beside each built asset: the server sends it to browsers that take gzip. */
function precompress(): Plugin {
  let outDir = 'dist';
  return {
    name: 'openguild-precompress',
    apply: 'build',
    configResolved: (c) => void (outDir = c.build.outDir),
    closeBundle() {
      const dir = join(outDir, 'assets');
      for (const f of readdirSync(dir)) {
        if (/\.(js|css|svg|json)$/.test(f)) writeFileSync(join(dir, `${f}.gz`), gzipSync(readFileSync(join(dir, f)), { level: 9 }));
      }
    },
  };
}

export default defineConfig({
  plugins: [svelte(), precompress()],
  build: { target: 'es2022', sourcemap: false, reportCompressedSize: false },
  server: {
    proxy: {
      '/graphql': { target: api, ws: true },
      '/auth': api,
    },
  },
  test: { include: ['src/**/*.test.ts'], environment: 'node' },
});
