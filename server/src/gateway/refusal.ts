import type { ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import {
  type IPColaError,
  ipcolaError,
  isIPColaError,
  isProxyErrorCode,
  type ProxyErrorCode,
  proxySpec,
} from '../errors/index.ts';

/** Seconds a client should wait before retrying a retryable refusal. */
const RETRY_AFTER_SECONDS = 1;

/** The status line parts and headers of an HTTP proxy refusal (DESIGN.md section 5). */
export function refusalHeaders(code: ProxyErrorCode): {
  status: number;
  headers: Record<string, string>;
} {
  const spec = proxySpec(code);
  const headers: Record<string, string> = {
    'Content-Type': 'text/plain; charset=utf-8',
    'X-IPCola-Error': code,
    'Proxy-Status': `ipcola; error=${spec.proxyStatus}; details="${code}"`,
  };
  if (spec.retryable) headers['Retry-After'] = String(RETRY_AFTER_SECONDS);
  if (spec.status === 407) headers['Proxy-Authenticate'] = 'Basic realm="ipcola"';
  return { status: spec.status, headers };
}

/**
 * The refusal for anything thrown on a proxy path: catalogue errors keep their code;
 * anything else means the exit or the stream behind it failed us.
 */
export function asProxyRefusal(error: unknown): IPColaError & { code: ProxyErrorCode } {
  if (isIPColaError(error) && isProxyErrorCode(error.code)) {
    return error as IPColaError & { code: ProxyErrorCode };
  }
  const code = (error as { code?: unknown } | null)?.code;
  const mapped: ProxyErrorCode =
    typeof code === 'string' && isProxyErrorCode(code) ? code : 'exit_failed';
  return ipcolaError(mapped, undefined, { cause: error }) as IPColaError & { code: ProxyErrorCode };
}

function body(error: IPColaError): string {
  // One line: the code, then the reason without any line break a client could misparse.
  return `${error.code}: ${error.message.replace(/[\r\n]+/g, ' ')}\n`;
}

/** Answers a forward-proxy request with a refusal; destroys the response if headers already went. */
export function refuseRequest(res: ServerResponse, thrown: unknown): void {
  const error = asProxyRefusal(thrown);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const { status, headers } = refusalHeaders(error.code);
  const text = body(error);
  res.writeHead(status, { ...headers, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/** Answers a CONNECT (a raw socket, no ServerResponse) with a refusal and closes it. */
export function refuseConnect(socket: Duplex, thrown: unknown): void {
  const error = asProxyRefusal(thrown);
  if (socket.destroyed) return;
  const { status, headers } = refusalHeaders(error.code);
  const text = body(error);
  const lines = [`HTTP/1.1 ${status} ${REASONS[status] ?? 'Error'}`];
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  lines.push(`Content-Length: ${Buffer.byteLength(text)}`, 'Connection: close', '', text);
  socket.end(lines.join('\r\n'));
}

const REASONS: Record<number, string> = {
  400: 'Bad Request',
  402: 'Payment Required',
  403: 'Forbidden',
  407: 'Proxy Authentication Required',
  429: 'Too Many Requests',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};
