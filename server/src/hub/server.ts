/**
 * The listener nodes dial: an HTTP/1.1 server (TLS when given a certificate) that hands
 * Upgrade requests to the hub and answers anything else with 426.
 */
import { createServer as createHttpServer, type Server } from 'node:http';
import { EXIT_PROOF_PATH, TUNNEL_UPGRADE_OFFER } from '@ipcola/shared/protocol';
import { closeServer, type Listener } from '../listeners/index.ts';
import { createTlsServer, type TlsServing } from '../tls/index.ts';
import type { Hub } from './hub.ts';

export interface HubServerOptions {
  /**
   * Serve TLS with this certificate and key (production); plain TCP when absent. `serve`
   * is handed the server, to give it renewed certificates (servedCertificate).
   */
  readonly tls?: TlsServing;
}

export function createHubServer(hub: Hub, options: HubServerOptions = {}): Server {
  const serverOptions = { headersTimeout: 10_000, requestTimeout: 15_000 };
  const server = options.tls
    ? createTlsServer(options.tls, serverOptions)
    : createHttpServer(serverOptions);
  server.on('upgrade', hub.handleUpgrade);
  server.on('request', (req, res) => {
    if ((req.url ?? '').split('?', 1)[0] === EXIT_PROOF_PATH) {
      hub.handleExitProof(req, res);
      return;
    }
    const body = 'This port carries exit-node tunnels only.\n';
    res.writeHead(426, {
      Upgrade: TUNNEL_UPGRADE_OFFER,
      Connection: 'close',
      'Content-Type': 'text/plain; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
    });
    res.end(body);
  });
  return server;
}

/** Closes the tunnels first: the HTTP server would otherwise wait for the upgraded sockets. */
export async function closeHubServer(hub: Hub, server: Server, graceMs: number): Promise<void> {
  await hub.close(graceMs);
  await closeServer(server, 0);
}

/** The hub's entry for listenInTurn: its server on HUB_PORT, closed tunnels first. */
export function hubListener(
  hub: Hub,
  options: {
    tls?: TlsServing | undefined;
    port: number;
    graceMs: number;
    /** Told first when the listener closes (shutdown): its nodes are about to move. */
    draining?: () => void;
  },
): Listener {
  const server = createHubServer(hub, { tls: options.tls });
  const close = () => {
    options.draining?.();
    return closeHubServer(hub, server, options.graceMs);
  };
  return { server, variable: 'HUB_PORT', port: options.port, close };
}
