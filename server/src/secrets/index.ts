/**
 * Secrets the server keeps at rest and must read back (so cannot hash): the sealing box.
 */
export { createSealingBox, type SealingBox } from './sealing-box.ts';
