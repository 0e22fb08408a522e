/**
 * postinstall: writes the PGlite template so the first start skips initdb. A failure only
 * makes that first start slower, so it never fails the install.
 */
import { existsSync } from 'node:fs';
import { PGLITE_TEMPLATE, writePgliteTemplate } from '../src/store/pglite-template.ts';

const started = Date.now();
try {
  if (PGLITE_TEMPLATE === null) throw new Error('PGlite is not installed under node_modules');
  if (existsSync(PGLITE_TEMPLATE)) process.exit(0);
  await writePgliteTemplate(PGLITE_TEMPLATE);
  console.log(`ipcola: PGlite template written in ${Date.now() - started} ms (${PGLITE_TEMPLATE})`);
} catch (error) {
  console.warn(
    `ipcola: could not write the PGlite template (${(error as Error).message}); the first start will run initdb instead`,
  );
}
