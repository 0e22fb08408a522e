/** A local target that answers with the address it was reached from. */
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export async function startWhoami(): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    res.end(`you reached this target from ${req.socket.remoteAddress}\n`);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, server };
}

/** A port free now, for a server whose URL must be known before it starts. */
export async function freePort(): Promise<number> {
  const probe = createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const { port } = probe.address() as AddressInfo;
  probe.close();
  await once(probe, 'close');
  return port;
}
