/** Helpers for the tests of exit-node health: waiting on server log lines, plain proxy GETs. */
import type { ChildProcess } from 'node:child_process';
import type { ProxyNetwork } from './proxy-network.ts';
import { exchangeText } from './raw-exchange.ts';

export type LogLine = Record<string, unknown>;

/**
 * Resolves with the next log line of the server process that `matches` (lines logged
 * from now on), or rejects after `timeoutMs`: an event to wait on, with a bound.
 */
export function nextLog(
  server: { child: ChildProcess },
  matches: (line: LogLine) => boolean,
  timeoutMs: number,
  what: string,
): Promise<LogLine> {
  const { child } = server;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.off('log', onLog);
      reject(new Error(`no ${what} within ${timeoutMs} ms`));
    }, timeoutMs);
    const onLog = (line: LogLine) => {
      if (!matches(line)) return;
      clearTimeout(timer);
      child.off('log', onLog);
      resolve(line);
    };
    child.on('log', onLog);
  });
}

export interface ProxyAnswer {
  status: number;
  /** X-IPCola-Error, when refused. */
  code: string | undefined;
  body: string;
}

/**
 * GET / on `host:port` through a CONNECT tunnel of the HTTP proxy, with the network's key
 * and a username suffix. A tunnel, not a forwarded request: forwarded requests may ride a
 * pooled upstream connection, and these tests count the streams opened through exits.
 */
export async function throughProxy(
  net: ProxyNetwork,
  params: string,
  target = { host: '127.0.0.1', port: net.targetPort },
): Promise<ProxyAnswer> {
  const authority = `${target.host}:${target.port}`;
  const auth = Buffer.from(`${net.key.id}${params}:${net.key.secret}`).toString('base64');
  const answer = await exchangeText(
    net.ports.proxy,
    `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: Basic ${auth}\r\n\r\n` +
      // Sent behind the CONNECT: the target reads it once the tunnel is up; a refusal
      // closes the connection without reading it.
      `GET / HTTP/1.1\r\nHost: ${authority}\r\nConnection: close\r\n\r\n`,
  );
  const split = answer.indexOf('\r\n\r\n');
  const head = split < 0 ? answer : answer.slice(0, split);
  const status = Number(head.split(' ')[1]);
  const rest = split < 0 ? '' : answer.slice(split + 4);
  // Through an open tunnel comes the target's own answer: its body is what we want.
  const inner = rest.indexOf('\r\n\r\n');
  return {
    status,
    code: /^x-ipcola-error: *(\S+)/im.exec(head)?.[1],
    body: status === 200 && inner >= 0 ? rest.slice(inner + 4) : rest,
  };
}
