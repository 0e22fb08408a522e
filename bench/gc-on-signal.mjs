/**
 * Preloaded (`--expose-gc --import bench/gc-on-signal.mjs`) into the Node processes under
 * test: SIGUSR2 runs a full garbage collection and writes one line with
 * process.memoryUsage() to stderr, so that the harness reads memory on a collected heap
 * rather than on whatever garbage happens to be lying around. Nothing else about the
 * process changes. Plain JavaScript: the server runs as its bundle, without tsx.
 */
const collect = globalThis.gc;
process.on('SIGUSR2', () => {
  collect?.();
  collect?.();
  process.stderr.write(`IPCOLA_BENCH_MEMORY ${JSON.stringify(process.memoryUsage())}\n`);
});
