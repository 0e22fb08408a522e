/**
 * A real HTTP server in front of the API that records every request it gets and, request by
 * request, passes it through, answers in its stead, passes it through and then loses the
 * answer, drops the connection, or never answers: the failures a client's retries are for.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type Action =
  | { kind: 'pass' }
  | { kind: 'answer'; status: number; headers?: Record<string, string>; body?: unknown }
  /** The API does the work; the client gets this answer instead of the API's. */
  | { kind: 'lose-answer'; status: number; headers?: Record<string, string> }
  | { kind: 'drop' }
  | { kind: 'hang' };

export interface Seen {
  method: string;
  url: string;
  idempotencyKey: string | undefined;
  at: number;
  /** The API's answer, for requests that reached it. */
  forwarded?: { status: number; body: string };
}

export interface Front {
  url: string;
  seen: Seen[];
  /** Actions for the next requests, in order; `pass` once they run out. */
  plan(...actions: Action[]): void;
  close(): Promise<void>;
}

export async function startFront(apiUrl: string): Promise<Front> {
  const seen: Seen[] = [];
  let actions: Action[] = [];
  const hanging = new Set<ServerResponse>();

  const forward = async (req: IncomingMessage, body: Buffer) => {
    const headers = new Headers();
    for (const [name, value] of Object.entries(req.headers)) {
      if (typeof value === 'string' && !['host', 'connection', 'content-length'].includes(name)) {
        headers.set(name, value);
      }
    }
    const answer = await fetch(`${apiUrl}${req.url}`, {
      method: req.method ?? 'GET',
      headers,
      ...(body.length > 0 ? { body } : {}),
    });
    return { status: answer.status, headers: answer.headers, body: await answer.text() };
  };

  const server = createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const entry: Seen = {
      method: req.method ?? '',
      url: req.url ?? '',
      idempotencyKey: req.headers['idempotency-key'] as string | undefined,
      at: Date.now(),
    };
    seen.push(entry);
    const action = actions.shift() ?? { kind: 'pass' };
    if (action.kind === 'drop') return req.socket.destroy();
    if (action.kind === 'hang') return void hanging.add(res);
    if (action.kind === 'answer') {
      res.writeHead(action.status, { 'content-type': 'application/json', ...action.headers });
      return res.end(action.body === undefined ? '' : JSON.stringify(action.body));
    }
    const answer = await forward(req, body);
    entry.forwarded = { status: answer.status, body: answer.body };
    if (action.kind === 'lose-answer') {
      res.writeHead(action.status, { 'content-type': 'text/plain', ...action.headers });
      return res.end('upstream answer lost');
    }
    const headers: Record<string, string> = {};
    answer.headers.forEach((value, name) => {
      if (!['content-length', 'content-encoding', 'transfer-encoding', 'connection'].includes(name))
        headers[name] = value;
    });
    res.writeHead(answer.status, headers);
    res.end(answer.body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    seen,
    plan(...next) {
      actions = next;
    },
    async close() {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}
