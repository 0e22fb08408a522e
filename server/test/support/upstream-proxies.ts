/**
 * Suppliers' proxies for the upstream-exit tests, made with maintained libraries rather
 * than by hand: a SOCKS5 server (@pondwader/socks5-server) and an HTTP proxy
 * (proxy-chain), each with user/password authentication and binding its outgoing
 * connections to one loopback address, so that a target sees which proxy carried it.
 * Each counts the requests it was asked to carry (health probes send none) and records
 * the destinations it was given.
 */
import { once } from 'node:events';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { createServer as createSocks5Server } from '@pondwader/socks5-server';
import { Server as ProxyChainServer } from 'proxy-chain';

export interface UpstreamProxyServer {
  readonly port: number;
  /** Authenticated requests it was asked to carry, as `host:port`. */
  readonly destinations: string[];
  /** Stops accepting and cuts every open connection. */
  stop(): Promise<void>;
  /** Listens again on the same port. */
  restart(): Promise<void>;
  close(): Promise<void>;
}

export interface Credentials {
  username: string;
  password: string;
}

/** A SOCKS5 proxy (RFC 1928/1929) whose connections to targets leave from `localAddress`. */
export async function startSocks5Upstream(
  credentials: Credentials,
  localAddress: string,
): Promise<UpstreamProxyServer> {
  const socks = createSocks5Server({ auth: credentials });
  const destinations: string[] = [];
  socks.setConnectionHandler((connection, sendStatus) => {
    destinations.push(`${connection.destAddress}:${connection.destPort}`);
    const client = connection.socket;
    const outgoing = connect({
      host: connection.destAddress,
      port: connection.destPort,
      localAddress,
    });
    let connected = false;
    outgoing.once('connect', () => {
      connected = true;
      sendStatus('REQUEST_GRANTED');
      client.pipe(outgoing).pipe(client);
    });
    outgoing.on('error', (error: NodeJS.ErrnoException) => {
      if (!connected) {
        sendStatus(error.code === 'ECONNREFUSED' ? 'CONNECTION_REFUSED' : 'HOST_UNREACHABLE');
      }
      client.destroy();
    });
    client.on('error', () => outgoing.destroy());
    client.on('close', () => outgoing.destroy());
  });
  // Our own listener, handing each socket to the library (its documented entry for
  // streams), so that stop() can cut open connections: the library cannot.
  return listenTracked((socket) => {
    socket.on('error', () => {});
    socks._handleConnection(socket);
  }, destinations);
}

async function listenTracked(
  onConnection: (socket: Socket) => void,
  destinations: string[],
): Promise<UpstreamProxyServer> {
  const sockets = new Set<Socket>();
  let server: Server | null = null;
  let port = 0;
  const listen = async () => {
    // Half-open like a real proxy: a client's EOF must not cut the answer still coming.
    const listening = createServer({ allowHalfOpen: true }, (socket) => {
      sockets.add(socket);
      socket.once('close', () => sockets.delete(socket));
      onConnection(socket);
    });
    listening.listen(port, '127.0.0.1');
    await once(listening, 'listening');
    port = (listening.address() as { port: number }).port;
    server = listening;
  };
  const stop = async () => {
    const closing = server;
    server = null;
    if (!closing) return;
    const closed = new Promise((resolve) => closing.close(resolve));
    for (const socket of sockets) socket.destroy();
    await closed;
  };
  await listen();
  return {
    get port() {
      return port;
    },
    destinations,
    stop,
    restart: listen,
    close: stop,
  };
}

/** An HTTP proxy (CONNECT and forwarding) whose connections to targets leave from `localAddress`. */
export async function startHttpUpstream(
  credentials: Credentials,
  localAddress: string,
): Promise<UpstreamProxyServer> {
  const destinations: string[] = [];
  let port = 0;
  let server: ProxyChainServer | null = null;
  const listen = async () => {
    const started = new ProxyChainServer({
      port,
      host: '127.0.0.1',
      verbose: false,
      prepareRequestFunction: ({ username, password, hostname, port: targetPort }) => {
        const ok = username === credentials.username && password === credentials.password;
        if (ok) destinations.push(`${hostname}:${targetPort}`);
        return { requestAuthentication: !ok, localAddress };
      },
    });
    await started.listen();
    port = started.port;
    server = started;
  };
  const stop = async () => {
    const closing = server;
    server = null;
    // true: also cut the connections it carries.
    await closing?.close(true);
  };
  await listen();
  return {
    get port() {
      return port;
    },
    destinations,
    stop,
    restart: listen,
    close: stop,
  };
}
