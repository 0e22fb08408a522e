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
import { isStoreUnavailable } from '../store/index.ts';

/** Seconds a client should wait before retrying a retryable refusal whose wait is not known. */
const RETRY_AFTER_SECONDS = 1;

/**
 * The status line parts and headers of an HTTP proxy refusal (README, "Proxy errors"). The
 * reason phrase is the code itself (RFC 9112 lets it be any text): of a refused CONNECT,
 * curl and Python's http.client show only the status line, never its headers or body
 * (undici and Chromium show even less: the status code).
 * `retryAfterSeconds`, when the refusal knows it (a block's time left), is the Retry-After.
 */
export function refusalHeaders(
  code: ProxyErrorCode,
  retryAfterSeconds?: number,
): {
  status: number;
  reason: string;
  headers: Record<string, string>;
} {
  const spec = proxySpec(code);
  const headers: Record<string, string> = {
    'Content-Type': 'text/plain; charset=utf-8',
    'X-IPCola-Error': code,
    'Proxy-Status': `ipcola; error=${spec.proxyStatus}; details="${code}"`,
  };
  if (retryAfterSeconds !== undefined) headers['Retry-After'] = String(retryAfterSeconds);
  else if (spec.retryable) headers['Retry-After'] = String(RETRY_AFTER_SECONDS);
  if (spec.status === 407) headers['Proxy-Authenticate'] = 'Basic realm="ipcola"';
  return { status: spec.status, reason: code, headers };
}

/**
 * The refusal for anything thrown on a proxy path: catalogue errors keep their code; a
 * store that did not answer is service_unavailable; anything else means the exit or the
 * stream behind it failed us.
 */
export function asProxyRefusal(error: unknown): IPColaError & { code: ProxyErrorCode } {
  if (isIPColaError(error) && isProxyErrorCode(error.code)) {
    return error as IPColaError & { code: ProxyErrorCode };
  }
  if (isStoreUnavailable(error)) {
    // PostgreSQL or Redis did not answer (a sticky session's pin, say): not the exit's fault.
    return ipcolaError('service_unavailable', undefined, { cause: error }) as IPColaError & {
      code: 'service_unavailable';
    };
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
  const { status, reason, headers } = refusalHeaders(error.code, error.retryAfterSeconds);
  const text = body(error);
  res.writeHead(status, reason, { ...headers, 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Answers on a raw socket (a CONNECT, an upgrade, a request Node could not parse: no
 * ServerResponse) with a refusal and closes it. `status` overrides the code's own (431 for
 * headers too large, which is still bad_params).
 */
export function refuseConnect(socket: Duplex, thrown: unknown, status?: number): void {
  const error = asProxyRefusal(thrown);
  if (socket.destroyed) return;
  const refusal = refusalHeaders(error.code, error.retryAfterSeconds);
  const { reason, headers } = refusal;
  const text = body(error);
  const lines = [`HTTP/1.1 ${status ?? refusal.status} ${reason}`];
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`);
  lines.push(`Content-Length: ${Buffer.byteLength(text)}`, 'Connection: close', '', text);
  socket.end(lines.join('\r\n'));
}
