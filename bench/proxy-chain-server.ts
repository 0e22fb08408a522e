/**
 * proxy-chain (npm) as a peer, in its own process so that it can be pinned to the proxy
 * core. Default options: no authentication, Node's global agent for forwarding.
 * Prints `{"port":N}` on stdout once listening.
 */
import { Server } from 'proxy-chain';

const server = new Server({ port: 0, host: '127.0.0.1', verbose: false });
await server.listen();
process.stdout.write(`${JSON.stringify({ port: server.port })}\n`);
process.on('SIGTERM', () => {
  void server.close(true).finally(() => process.exit(0));
});
