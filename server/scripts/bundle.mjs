/**
 * Builds what `npm start` runs: src/main.ts and the workspace packages it imports
 * (@ipcola/*) in one ES module, dist/main.js, run by plain `node`. The npm dependencies
 * stay in node_modules, imported as they are (PGlite, the GeoIP data and swagger-ui find
 * their files beside their own code).
 *
 * Why a build: running the TypeScript through tsx keeps its loader thread and esbuild's
 * service in the server process, about 60 MB of RSS at rest (bench/README.md, "The
 * floor"); the embedded server measured 218-226 MB through tsx and 155 MB bundled.
 * esbuild takes about a quarter of a second here, so `npm start` builds every time and
 * never runs a bundle older than the sources. The tests run the sources through tsx.
 *
 * Plain JavaScript on purpose: this runs before anything can run TypeScript.
 */
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';

const SERVER_DIR = fileURLToPath(new URL('..', import.meta.url));
const OUT_FILE = path.join(SERVER_DIR, 'dist', 'main.js');
const OUT_DIR = path.dirname(OUT_FILE);

/**
 * `import.meta.url` in a bundle is the bundle's URL, and the sources locate files next to
 * themselves with it (the migrations, the OpenAPI document, the portal, the demo's
 * agent). Each source file gets its own again, relative to the bundle, so that the
 * checkout can move.
 */
const ownImportMetaUrl = {
  name: 'own-import-meta-url',
  setup(build) {
    build.onLoad({ filter: /\.ts$/ }, async ({ path: file }) => {
      const source = await readFile(file, 'utf8');
      if (!source.includes('import.meta.url')) return { contents: source, loader: 'ts' };
      const relative = path.relative(OUT_DIR, file).split(path.sep).join('/');
      const own = `new URL(${JSON.stringify(relative)}, import.meta.url).href`;
      return { contents: source.replaceAll('import.meta.url', own), loader: 'ts' };
    });
  },
};

/**
 * npm packages stay external, so the bundle imports them from server/, not from where
 * the importing source lies. That is the same package only if both places resolve to the
 * same installed version: a workspace with its own copy of a package (npm does not hoist
 * one whose version differs) fails the build here instead of at run time.
 */
const npmPackagesExternal = {
  name: 'npm-packages-external',
  setup(build) {
    const fromBundle = createRequire(pathToFileURL(OUT_FILE));
    const mismatches = [];
    build.onResolve({ filter: /^[^./]/ }, ({ path: specifier, importer }) => {
      if (specifier.startsWith('node:') || specifier.startsWith('@ipcola/')) return undefined;
      const name = packageName(specifier);
      const mine = versionOf(createRequire(importer), name);
      const bundles = versionOf(fromBundle, name);
      if (mine !== bundles) {
        mismatches.push(`${name}: ${importer} has ${mine}, server/dist would load ${bundles}`);
      }
      return { path: specifier, external: true };
    });
    build.onEnd((result) => {
      for (const text of new Set(mismatches)) result.errors.push({ text });
    });
  },
};

function packageName(specifier) {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

/** The installed version `require` resolves, or the node built-in's name. */
function versionOf(require, name) {
  try {
    return require(`${name}/package.json`).version;
  } catch {
    // Packages whose exports hide package.json: the resolved entry point tells them apart.
    try {
      return require.resolve(name);
    } catch {
      return 'nothing';
    }
  }
}

await build({
  entryPoints: [path.join(SERVER_DIR, 'src', 'main.ts')],
  outfile: OUT_FILE,
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: 'linked',
  // No keepNames: its __name() runs each time a closure is made, 3% of the gateway's CPU
  // on new tunnels in the profile. The errors set their own names.
  logLevel: 'warning',
  plugins: [ownImportMetaUrl, npmPackagesExternal],
});
