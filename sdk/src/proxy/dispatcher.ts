/**
 * An undici dispatcher through the gateway, for `fetch` (undici's or Node's) and undici's
 * `request`. Plain-http targets are forwarded (`GET http://host/path`, as curl does, so each
 * request may take a new exit); https targets are tunnelled with CONNECT. Either way a gateway
 * refusal fails the request with the typed error (as the `cause` of fetch's "fetch failed"):
 * undici alone reports a refused CONNECT as `Proxy response (503) !== 200` and a forwarded 407
 * as a network error, both without the headers that say why.
 */
import type { ConnectionOptions } from 'node:tls';
import { DecoratorHandler, Dispatcher, Pool, ProxyAgent } from 'undici';
import type { Credentials } from './endpoints.ts';
import { namedCode, refusalError } from './refusal.ts';

export interface DispatcherOptions {
  /** TLS options for the targets behind CONNECT (e.g. `{ ca }` for a private CA). */
  requestTls?: ConnectionOptions;
  /** Connections kept to the gateway per dispatcher; default undici's (unlimited). */
  connections?: number;
}

/** The dispatcher for a gateway (`http://host:port`) and one set of credentials. */
export function gatewayDispatcher(
  gateway: string,
  credentials: Credentials,
  options: DispatcherOptions = {},
): Dispatcher {
  return new GatewayDispatcher(gateway, credentials, options);
}

class GatewayDispatcher extends Dispatcher {
  readonly #authorization: string;
  readonly #forward: Pool;
  readonly #tunnel: ProxyAgent;

  constructor(gateway: string, credentials: Credentials, options: DispatcherOptions) {
    super();
    this.#authorization = `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`).toString('base64')}`;
    const connections = options.connections ?? null;
    this.#forward = new Pool(gateway, { connections });
    this.#tunnel = new ProxyAgent({
      uri: gateway,
      token: this.#authorization,
      connections,
      ...(options.requestTls ? { requestTls: options.requestTls } : {}),
      clientFactory: (origin, clientOptions) => tunnelClient(origin, clientOptions),
    });
  }

  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler) {
    const origin = String(options.origin ?? '');
    if (!origin.startsWith('http:')) return this.#tunnel.dispatch(options, handler);
    const headers = headerObject(options.headers);
    if (!Object.keys(headers).some((name) => name.toLowerCase() === 'host')) {
      headers.host = new URL(origin).host;
    }
    headers['proxy-authorization'] = this.#authorization;
    return this.#forward.dispatch(
      { ...options, path: `${origin}${options.path}`, headers },
      new ForwardRefusals(handler, `${origin}${options.path}`),
    );
  }

  // undici's own callers use both forms, a promise and a trailing callback.
  override close(...args: unknown[]): Promise<void> {
    const done = Promise.all([this.#forward.close(), this.#tunnel.close()]).then(() => {});
    return settle(done, args.at(-1));
  }

  override destroy(...args: unknown[]): Promise<void> {
    const error = args[0] instanceof Error ? args[0] : null;
    const done = Promise.all([this.#forward.destroy(error), this.#tunnel.destroy(error)]).then(
      () => {},
    );
    return settle(done, args.at(-1));
  }
}

/**
 * The pool undici's ProxyAgent sends CONNECTs through, reading a refusal's headers before
 * ProxyAgent would reduce it to its status.
 */
function tunnelClient(origin: string | URL, options: Pool.Options): Pool {
  const pool = new Pool(origin, options);
  const connect = pool.connect.bind(pool) as (
    options: Dispatcher.ConnectOptions,
  ) => Promise<Dispatcher.ConnectData>;
  const checked = async (connectOptions: Dispatcher.ConnectOptions) => {
    const answer = await connect(connectOptions);
    if (answer.statusCode !== 200) {
      answer.socket.on('error', () => {}).destroy();
      throw refusalError(
        answer.statusCode,
        answer.headers as Record<string, string | string[] | undefined>,
        connectOptions.path,
        'CONNECT',
      );
    }
    return answer;
  };
  pool.connect = checked as typeof pool.connect;
  return pool;
}

/** Turns a forwarded request's refusal (named by the gateway's header) into the typed error. */
class ForwardRefusals extends DecoratorHandler {
  readonly #target: string;

  constructor(handler: Dispatcher.DispatchHandler, target: string) {
    super(handler);
    this.#target = target;
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
    statusMessage?: string,
  ): void {
    if (statusCode >= 400 && namedCode(headers) !== undefined) {
      controller.abort(refusalError(statusCode, headers, this.#target, 'request'));
      return;
    }
    decorated.onResponseStart.call(this, controller, statusCode, headers, statusMessage);
  }
}

// What DecoratorHandler does (pass on to the wrapped handler), which its types leave out.
const decorated = DecoratorHandler.prototype as Required<
  Pick<Dispatcher.DispatchHandler, 'onResponseStart'>
>;

function settle(done: Promise<void>, callback: unknown): Promise<void> {
  if (typeof callback === 'function')
    done.then(
      () => callback(),
      () => callback(),
    );
  return done;
}

function headerObject(
  headers: Dispatcher.DispatchOptions['headers'],
): Record<string, string | string[]> {
  const result: Record<string, string | string[]> = {};
  if (headers == null) return result;
  if (Array.isArray(headers)) {
    // undici's flat form: [name, value, name, value, ...]
    for (let i = 0; i + 1 < headers.length; i += 2)
      result[String(headers[i])] = String(headers[i + 1]);
    return result;
  }
  if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === 'function') {
    for (const [name, value] of headers as Iterable<[string, string | string[] | undefined]>) {
      if (value !== undefined) result[name] = value;
    }
    return result;
  }
  for (const [name, value] of Object.entries(
    headers as Record<string, string | string[] | undefined>,
  )) {
    if (value !== undefined) result[name] = value;
  }
  return result;
}
