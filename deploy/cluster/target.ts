/**
 * A local target for the cluster's exits, like the demo's: it answers with the address a
 * request came from, so a printed curl line shows which exit carried it, offline.
 * `/bytes/N` answers N bytes, for tests that count what was metered.
 */
import { createServer, type Server } from 'node:http';

export interface Target {
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

export async function startTarget(): Promise<Target> {
  const server: Server = createServer((req, res) => {
    if (req.url?.startsWith('/bytes/')) {
      const size = Math.min(Number(req.url.slice('/bytes/'.length)) || 0, 64 * 1024 * 1024);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
      res.end(Buffer.alloc(size, 0x61));
      return;
    }
    res.setHeader('content-type', 'text/plain; charset=utf-8');
    res.end(`you reached this target from ${req.socket.remoteAddress}\n`);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/`,
    port,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
