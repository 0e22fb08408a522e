/**
 * The published build: the library as ESM and CommonJS with declarations (the API's types
 * from @ipcola/openapi inlined, since that package is not published) and source maps; the
 * CLI as one ESM file. Only `openapi-fetch` stays a runtime dependency.
 */
import { defineConfig } from 'tsup';

const shared = {
  outDir: 'dist',
  target: 'node20',
  platform: 'node',
  sourcemap: true,
  tsconfig: 'tsconfig.build.json',
  noExternal: [/^@ipcola\//],
} as const;

export default defineConfig([
  {
    ...shared,
    entry: { index: 'src/index.ts', api: 'src/api.ts' },
    format: ['esm', 'cjs'],
    dts: { resolve: [/^@ipcola\//] },
  },
  {
    ...shared,
    entry: { cli: 'src/cli/main.ts' },
    format: ['esm'],
  },
]);
