/**
 * A TCP balancer stand-in for tests: relays each connection to `port` from the
 * balancer's own address, writing first what `header` gives for the client (a PROXY
 * protocol line, as HAProxy's `send-proxy` does, or nothing).
 */
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';

export async function startProxyHeaderRelay(options: {
  port: number;
  from: string;
  header: (client: Socket) => string;
}): Promise<{ server: Server; port: number }> {
  const server = createServer((client) => {
    const upstream = connect({ host: '127.0.0.1', port: options.port, localAddress: options.from });
    upstream.write(options.header(client));
    client.pipe(upstream).pipe(client);
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, port: (server.address() as { port: number }).port };
}

/** PROXY protocol version 1 for the client's TCP4 address, to `port`. */
export function proxyLineFor(client: Socket, port: number): string {
  return `PROXY TCP4 ${client.remoteAddress} 127.0.0.1 ${client.remotePort} ${port}\r\n`;
}
