import type { Server as HttpServer } from 'node:http';
import type { AddressInfo, Server, Socket } from 'node:net';
import { ConfigError } from '../config/index.ts';

/**
 * Starts listening; resolves with the bound port. A bind failure becomes a ConfigError
 * naming the variable that chose the port (or HOST when the address is not ours).
 */
export function listen(
  server: Server,
  variable: string,
  host: string,
  port: number,
): Promise<number> {
  track(server);
  return new Promise((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      server.off('listening', onListening);
      reject(bindError(error, variable, host, port));
    };
    const onListening = () => {
      server.off('error', onError);
      resolve((server.address() as AddressInfo).port);
    };
    server.once('error', onError);
    server.once('listening', onListening);
    // Not exclusive: WORKERS processes share each public port through the cluster primary.
    server.listen({ host, port });
  });
}

/** A server to start, the variable that chose its port, and how it stops. */
export interface Listener {
  readonly server: Server | HttpServer;
  /** Named when the port cannot be bound. */
  readonly variable: string;
  readonly port: number;
  /** When closing the server is not all; otherwise closeServer with the grace period. */
  readonly close?: () => Promise<void>;
}

/**
 * Starts the listeners one after the other, writing each bound port into `ports`. Each
 * one's close is handed to onListening as soon as it listens, so that one that cannot
 * bind leaves the caller what closes those before it.
 */
export async function listenInTurn<Name extends string>(
  listeners: Record<Name, Listener>,
  options: {
    host: string;
    graceMs: number;
    ports: Record<Name, number>;
    onListening(close: () => Promise<void>): void;
  },
): Promise<void> {
  for (const [name, listener] of Object.entries<Listener>(listeners)) {
    const { server, variable, port } = listener;
    options.ports[name as Name] = await listen(server, variable, options.host, port);
    options.onListening(listener.close ?? (() => closeServer(server, options.graceMs)));
  }
}

/**
 * Stops accepting, lets open requests finish for graceMs, then cuts what is left.
 * Safe to call on a server that is not listening.
 */
export function closeServer(server: Server | HttpServer, graceMs: number): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    const cut = setTimeout(() => {
      if ('closeAllConnections' in server) server.closeAllConnections();
      // Sockets an HTTP server no longer manages (CONNECT tunnels) and raw TCP servers' sockets.
      for (const socket of connections.get(server) ?? []) socket.destroy();
    }, graceMs);
    cut.unref();
    server.close(() => {
      clearTimeout(cut);
      resolve();
    });
    // Idle keep-alive sockets would hold close() open until they time out.
    if ('closeIdleConnections' in server) server.closeIdleConnections();
  });
}

function bindError(
  error: NodeJS.ErrnoException,
  variable: string,
  host: string,
  port: number,
): Error {
  switch (error.code) {
    case 'EADDRINUSE':
      return new ConfigError(variable, `${host}:${port} is already in use`);
    case 'EACCES':
      return new ConfigError(variable, `permission denied to listen on ${host}:${port}`);
    case 'EADDRNOTAVAIL':
      return new ConfigError('HOST', `${host} is not an address of this machine`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new ConfigError('HOST', `${host} does not resolve`);
    default:
      return new ConfigError(
        variable,
        `cannot listen on ${host}:${port} (${error.code ?? error.message})`,
      );
  }
}

const connections = new WeakMap<Server, Set<Socket>>();

function track(server: Server): void {
  if (connections.has(server)) return;
  const open = new Set<Socket>();
  connections.set(server, open);
  server.on('connection', (socket: Socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
  });
}
