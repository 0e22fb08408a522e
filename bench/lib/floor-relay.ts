/** What both floors of `--only floor` (h2-floor.ts, mux-floor.ts) share: the plain parts. */
import type { Duplex } from 'node:stream';
import { parseArgs } from 'node:util';

/** `--role exit` or `--role relay --exit PORT`. */
export function floorRole(): { role: string | undefined; exitPort: number } {
  const { values } = parseArgs({ options: { role: { type: 'string' }, exit: { type: 'string' } } });
  return { role: values.role, exitPort: Number(values.exit) };
}

/** Both ways until either side ends or fails; then both are gone. Plain pipes, on purpose. */
export function pipeBoth(a: Duplex, b: Duplex): void {
  const done = () => {
    a.destroy();
    b.destroy();
  };
  a.pipe(b);
  b.pipe(a);
  a.once('error', done).once('close', done);
  b.once('error', done).once('close', done);
}

/** Prints `{"port":N}`, which the harness waits for (startPortPrinter). */
export function listening(server: { address(): unknown }): void {
  const { port } = server.address() as { port: number };
  process.stdout.write(`${JSON.stringify({ port })}\n`);
}
