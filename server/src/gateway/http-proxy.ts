import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { parseAuthority } from '@ipcola/shared/protocol';
import { type IPColaError, ipcolaError, isIPColaError } from '../errors/index.ts';
import { proxyHeaderLength } from '../listeners/proxy-protocol.ts';
import { type ConnectionLog, type Logger, lazyChild, newConnectionId } from '../log/index.ts';
import { SocketMeter, type UsageMeter, type UsageOwner } from '../metering/index.ts';
import type { GatewayObserver } from '../metrics/index.ts';
import type { Access, ProxyKey } from './access.ts';
import { Allowance, type Allowances } from './allowance.ts';
import { clientGone, type EarlyData, readWhileOpening, stopWatchingClient } from './client-gone.ts';
import type { Connector } from './connector.ts';
import { exitDetailHeaders, wantsExitDetails } from './exit-details.ts';
import type { Forwarder } from './forwarder.ts';
import type { OpenTunnels } from './open-tunnels.ts';
import { asProxyRefusal, refuseConnect, refuseRequest } from './refusal.ts';
import { ResponsesInFlight } from './responses-in-flight.ts';

export interface HttpProxyOptions {
  access: Access;
  allowances: Allowances;
  connector: Connector;
  forwarder: Forwarder;
  tunnels: OpenTunnels;
  usage: UsageMeter;
  logger: Logger;
  /** Time allowed for a request's headers (slowloris). */
  headersTimeoutMs: number;
  /** A client connection with no traffic this long is closed. */
  idleTimeoutMs: number;
  observer?: GatewayObserver;
}

/** Requests the gateway refused itself (its own status, not the target's): never billed. */
const refusedByUs = new WeakSet<ServerResponse>();

const meters = new WeakMap<Socket, SocketMeter>();
function meterOf(socket: Socket): SocketMeter {
  let meter = meters.get(socket);
  if (!meter) {
    meter = new SocketMeter(socket, proxyHeaderLength(socket));
    meters.set(socket, meter);
  }
  return meter;
}

/** The HTTP proxy listener: absolute-URI forwarding and CONNECT tunnels. */
export function createHttpProxyServer(options: HttpProxyOptions): Server {
  const { access, allowances, connector, forwarder, tunnels, usage, observer } = options;
  const responses = new ResponsesInFlight();

  /**
   * A keep-alive connection's allowance, reused by its requests while they use one key:
   * a grant per request would cost a hot-state call each. Returned when the socket closes.
   */
  const socketAllowances = new WeakMap<Socket, { keyId: string; allowance: Allowance }>();
  const allowanceFor = (socket: Socket, key: ProxyKey): Allowance | Promise<Allowance> => {
    const held = socketAllowances.get(socket);
    // Most requests of a keep-alive connection: no await, no promise.
    if (held?.keyId === key.id && held.allowance.remaining > 0) return held.allowance;
    return newAllowanceFor(socket, key, held);
  };
  const newAllowanceFor = async (
    socket: Socket,
    key: ProxyKey,
    held: { keyId: string; allowance: Allowance } | undefined,
  ): Promise<Allowance> => {
    if (held?.keyId === key.id) {
      if (await held.allowance.more()) return held.allowance;
      throw ipcolaError('quota_exhausted');
    }
    held?.allowance.close();
    socketAllowances.delete(socket);
    const allowance = await allowances.open(key);
    if (socket.destroyed) {
      allowance.close();
      throw ipcolaError('quota_exhausted', 'the client left');
    }
    socketAllowances.set(socket, { keyId: key.id, allowance });
    socket.once('close', () => allowance.close());
    return allowance;
  };

  const server = createServer({
    // Node's strict parser only: never insecureHTTPParser (request smuggling).
    insecureHTTPParser: false,
    maxHeaderSize: 16 * 1024,
    // Counted from a request's first byte (from accept for a new connection) and not reset by
    // bytes trickling in; Node only checks it every connectionsCheckingInterval, 30 s by
    // default, which let a 10 s timeout fire after 24-40 s.
    headersTimeout: options.headersTimeoutMs,
    connectionsCheckingInterval: headersCheckIntervalMs(options.headersTimeoutMs),
    requestTimeout: 0, // uploads may be long; idleness is what we bound
    keepAliveTimeout: 30_000,
    requireHostHeader: false, // the absolute URI names the target
  });
  server.timeout = options.idleTimeoutMs;

  server.on('connection', (socket: Socket) => {
    meterOf(socket);
    socket.setNoDelay(true);
  });

  const answeringClientError = new WeakSet<Socket>();
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => {
    if (answeringClientError.has(socket)) return;
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    // Headers too slow, or malformed HTTP (smuggling attempts, bad line ends, oversized
    // headers): refuse and close, after the answers to any requests before it.
    const { refusal, status } = clientErrorRefusal(error);
    observer?.refused('http', refusal.code);
    answeringClientError.add(socket);
    const place = responses.placeOfParseError(socket);
    if (place === 'cut') socket.destroy();
    else if (place === 'now') refuseConnect(socket, refusal, status);
    else responses.afterEarlierResponses(socket, () => refuseConnect(socket, refusal, status));
  });

  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    responses.track(req, res);
    const log = lazyChild(options.logger, () => ({
      conn: connectionId(req.socket),
      client: req.socket.remoteAddress,
    }));
    void forward(req, res, log).catch((error) => {
      if (isIPColaError(error)) log.debug({ code: error.code }, 'request refused');
      else log.error({ err: error }, 'forwarding failed');
      observer?.refused('http', asProxyRefusal(error).code);
      if (!res.headersSent) refusedByUs.add(res);
      refuseRequest(res, error);
    });
  });

  server.on('connect', (req: IncomingMessage, socket: Socket, head: Buffer) => {
    const log = lazyChild(options.logger, () => ({
      conn: connectionId(socket),
      client: socket.remoteAddress,
    }));
    // A refused or abandoned socket can still emit errors (a reset after our answer): keep a
    // listener until it closes so that none reaches the process.
    const onError = (error: Error) => log.debug({ err: error }, 'client socket error');
    socket.on('error', onError);
    socket.once('close', () => socket.off('error', onError));
    // A CONNECT pipelined behind requests is answered after them (head, the bytes after
    // it, waits with it; Node leaves the socket paused until we read).
    responses.afterEarlierResponses(socket, () => {
      if (socket.destroyed) {
        settleUnattributed(socket);
        return;
      }
      void connect(req, socket, head, log).catch((error) => {
        if (error === clientGone(socket).reason) {
          log.debug('the client left while its CONNECT stream opened');
          settleUnattributed(socket);
          return;
        }
        if (isIPColaError(error)) log.debug({ code: error.code }, 'CONNECT refused');
        else log.error({ err: error }, 'CONNECT failed');
        observer?.refused('connect', asProxyRefusal(error).code);
        refuseConnect(socket, error);
        settleUnattributed(socket);
      });
    });
  });

  server.on('upgrade', (_req: IncomingMessage, socket: Socket) => {
    responses.afterEarlierResponses(socket, () =>
      refuseConnect(
        socket,
        ipcolaError(
          'bad_params',
          'upgrades through the forward proxy are not supported: use CONNECT',
        ),
      ),
    );
  });

  async function forward(
    req: IncomingMessage,
    res: ServerResponse,
    _log: ConnectionLog,
  ): Promise<void> {
    const socket = req.socket;
    const meter = meterOf(socket);
    // Whatever happens to this request, its bytes leave the socket's meter when it ends:
    // to its key when it got as far as an exit, to nobody when we refused it before any
    // of its bytes went on (a refusal after part of an upload went out is billed).
    let owner: UsageOwner | null = null;
    let allowance: Allowance | null = null;
    /** What a byte of this request costs at its exit (a keep-alive socket's next may use another). */
    let microPerByte: number | undefined;
    let release = () => {};
    res.once('close', () => {
      release();
      const bytes = meter.take();
      const billed = owner !== null && (!refusedByUs.has(res) || (allowance?.taken ?? 0) > 0);
      const used = allowance?.settle(billed ? bytes.up + bytes.down : 0, microPerByte);
      if (billed && owner) usage.record({ ...owner, ...bytes, requests: 1, ...(used && { used }) });
    });

    const target = absoluteTarget(req.url ?? '');
    const admission = await access.admitHeader(
      req.headers['proxy-authorization'],
      socket.remoteAddress,
    );
    release = access.hold(admission.key, () => resetSocket(socket), {
      address: socket.remoteAddress,
      country: admission.credentials.targeting.country,
    });
    const got = allowanceFor(socket, admission.key);
    allowance = got instanceof Allowance ? got : await got;
    let exit = await connector.choose(admission);
    observer?.opened('http');
    if (admission.credentials.session)
      res.setHeader('X-IPCola-Session', admission.credentials.session.id);
    // Once more on another exit when the first one's instance vanished (connector.instead):
    // its open failed, so no byte of the request left and nothing was answered yet.
    for (let attempt = 1; ; attempt++) {
      microPerByte = allowance.priceAt(exit);
      owner = { keyId: admission.key.id, nodeId: exit.nodeId, country: exit.country ?? '' };
      res.setHeader('X-IPCola-Exit-Country', exit.country ?? '');
      if (wantsExitDetails(req)) {
        for (const [name, value] of exitDetailHeaders(exit)) res.setHeader(name, value);
      }
      const through = exit;
      /** How this request's open through the exit ended, once one was tried. */
      let opening: Promise<{ error: unknown } | { opened: true }> | undefined;
      const open = async (to: { host: string; port: number }) => {
        const pending = connector
          .openThrough(through, to, clientGone(socket))
          .finally(() => stopWatchingClient(socket));
        opening = pending.then(
          () => ({ opened: true as const }),
          (error: unknown) => ({ error }),
        );
        const opened = await pending;
        opened.stream.once('close', opened.release);
        return opened.stream;
      };
      const route = {
        exitId: exit.id,
        keyId: admission.key.id,
        sessionId: admission.credentials.session?.id ?? null,
      };
      try {
        await forwarder.forward(
          route,
          open,
          req,
          res,
          {
            origin: `http://${target.url.host}`,
            path: target.path,
            authority: target.url.host,
          },
          allowance,
        );
        return;
      } catch (error) {
        // Nothing answered and no open through the exit succeeded (it failed, or the exit's
        // upstream was dropped while it was under way, as when its instance is found
        // gone): no byte of the request left.
        const outcome = attempt === 1 && !res.headersSent ? await opening : undefined;
        if (!outcome || !('error' in outcome)) throw error;
        exit = await connector.instead(admission, outcome.error);
      }
    }
  }

  async function connect(
    req: IncomingMessage,
    socket: Socket,
    head: Buffer,
    log: ConnectionLog,
  ): Promise<void> {
    const target = parseAuthority(req.url ?? '');
    if (!target) throw ipcolaError('bad_params', 'CONNECT needs host:port');
    const admission = await access.admitHeader(
      req.headers['proxy-authorization'],
      socket.remoteAddress,
    );
    const holding = access.hold(admission.key, () => resetSocket(socket), {
      address: socket.remoteAddress,
      country: admission.credentials.targeting.country,
    });
    let allowance: Allowance | undefined;
    const release = () => {
      holding();
      allowance?.close();
    };
    let upstream: Awaited<ReturnType<Connector['open']>>;
    const stopReading = readWhileOpening(socket, head);
    let early: EarlyData;
    try {
      allowance = await allowances.open(admission.key);
      upstream = await connector.open(admission, target, clientGone(socket));
      allowance.priceAt(upstream.exit);
    } catch (error) {
      release();
      throw error;
    } finally {
      early = stopReading();
      stopWatchingClient(socket);
    }
    if (socket.destroyed) {
      upstream.stream.destroy();
      upstream.release();
      release();
      return;
    }
    const headers = [
      'HTTP/1.1 200 Connection established',
      `X-IPCola-Exit-Country: ${upstream.exit.country ?? ''}`,
    ];
    if (upstream.sessionId) headers.push(`X-IPCola-Session: ${upstream.sessionId}`);
    if (wantsExitDetails(req)) {
      for (const [name, value] of exitDetailHeaders(upstream.exit))
        headers.push(`${name}: ${value}`);
    }
    socket.write(`${headers.join('\r\n')}\r\n\r\n`);
    if (head.length > 0) upstream.stream.write(head);
    // Bytes read while the stream opened go first. After the client's EOF they cannot
    // be put back into the socket; the splice then ends the upstream after them.
    if (early.bytes.length > 0) {
      if (early.ended) upstream.stream.write(early.bytes);
      else socket.unshift(early.bytes);
    }
    log.debug({ target: `${target.host}:${target.port}`, exit: upstream.exit.id }, 'tunnel open');
    observer?.opened('connect');
    tunnels.run(
      {
        client: socket,
        upstream: upstream.stream,
        keyId: admission.key.id,
        allowance,
        nodeId: upstream.exit.nodeId,
        country: upstream.exit.country ?? '',
        onEnd: () => {
          upstream.release();
          holding();
        },
      },
      meterOf(socket),
    );
  }

  return server;
}

/** The parts of an absolute-form request target; only plain http:// is forwarded. */
function absoluteTarget(raw: string): { url: URL; host: string; port: number; path: string } {
  if (!/^http:\/\//i.test(raw)) {
    if (/^https:\/\//i.test(raw)) {
      throw ipcolaError('bad_params', 'https:// is tunnelled with CONNECT, not forwarded');
    }
    throw ipcolaError('bad_params', 'this is a proxy: send an absolute http:// URI (curl -x)');
  }
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw ipcolaError('bad_params', 'the request URI is not a valid URL');
  }
  if (url.username || url.password) {
    throw ipcolaError('bad_params', 'credentials inside the request URI are not forwarded');
  }
  // The path is passed on exactly as the client wrote it, not re-serialised.
  const afterAuthority = raw.slice(raw.indexOf('/', 'http://'.length));
  const path =
    raw.indexOf('/', 'http://'.length) === -1 ? '/' : afterAuthority.split('#')[0] || '/';
  const port = url.port === '' ? 80 : Number(url.port);
  return { url, host: url.hostname, port, path };
}

/** Cuts a client connection so that it sees an abort (a TCP reset), not a clean end. */
export function resetSocket(socket: Socket): void {
  if (socket.destroyed) return;
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

/**
 * How often Node looks for requests past their headers timeout: a twentieth of it, between
 * 50 ms and 1 s, so that the timeout fires within 5 % of what is configured (10 s: 500 ms,
 * a walk over the connections still reading headers twice a second).
 */
function headersCheckIntervalMs(headersTimeoutMs: number): number {
  return Math.min(1_000, Math.max(50, Math.floor(headersTimeoutMs / 20)));
}

/** The refusal for a request Node's server gave up on, with its status when not the code's. */
function clientErrorRefusal(error: NodeJS.ErrnoException): {
  refusal: IPColaError;
  status?: number;
} {
  // Node's own error codes, set by its headers timeout and by llhttp.
  if (error.code === 'ERR_HTTP_REQUEST_TIMEOUT') return { refusal: ipcolaError('request_timeout') };
  const refusal = ipcolaError('bad_params', 'malformed HTTP request');
  return error.code === 'HPE_HEADER_OVERFLOW' ? { refusal, status: 431 } : { refusal };
}

/** Bytes of a refused exchange belong to no key: drop them from the socket's meter. */
function settleUnattributed(socket: Socket): void {
  meters.get(socket)?.take();
}

const ids = new WeakMap<Socket, string>();
function connectionId(socket: Socket): string {
  let id = ids.get(socket);
  if (!id) {
    id = newConnectionId();
    ids.set(socket, id);
  }
  return id;
}
