/**
 * A customer's webhook receiver on 127.0.0.1: keeps every request it gets and answers
 * with the status `answer` picks. It checks signatures with its own HMAC code (what a
 * customer would write from the README), not the server's.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { eventually } from './engines.ts';

export interface Received {
  path: string;
  headers: IncomingHttpHeaders;
  /** The raw body, as signed. */
  body: string;
  /** The parsed body: { id, type, created, account_id, data }. */
  event: { id: string; type: string; created: number; account_id: string; data: unknown };
}

export interface WebhookReceiver {
  /** http://127.0.0.1:<port>/hooks */
  url: string;
  port: number;
  received: Received[];
  /** The status to answer a request with; default 200. */
  answer: (request: Received) => number;
  /** Waits until `count` requests matching `which` arrived; they are returned. */
  waitFor(count: number, which?: (request: Received) => boolean): Promise<Received[]>;
  close(): Promise<void>;
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const receiver: WebhookReceiver = {
    url: '',
    port: 0,
    received: [],
    answer: () => 200,
    async waitFor(count, which = () => true) {
      const matching = () => receiver.received.filter(which);
      await eventually(() => matching().length >= count, 10_000, `${count} webhook request(s)`);
      return matching();
    },
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const request: Received = {
        path: req.url ?? '',
        headers: req.headers,
        body,
        event: JSON.parse(body),
      };
      receiver.received.push(request);
      res.statusCode = receiver.answer(request);
      res.end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.port = (server.address() as AddressInfo).port;
  receiver.url = `http://127.0.0.1:${receiver.port}/hooks`;
  return receiver;
}

/**
 * The receiver's own check of `IPCola-Signature: t=<unix seconds>,v1=<hex>`: HMAC-SHA256
 * of `<t>.<raw body>` under the whole secret, compared in constant time, and the
 * timestamp within five minutes of the receiver's clock.
 */
export function receiverAccepts(
  body: string,
  header: string | string[] | undefined,
  secret: string,
  nowSeconds = Math.floor(Date.now() / 1000),
): boolean {
  const match = typeof header === 'string' ? /^t=(\d+),v1=([0-9a-f]{64})$/.exec(header) : null;
  if (!match) return false;
  const [, t = '', v1 = ''] = match;
  if (Math.abs(nowSeconds - Number(t)) > 300) return false;
  const expected = createHmac('sha256', secret).update(`${t}.${body}`).digest();
  return timingSafeEqual(expected, Buffer.from(v1, 'hex'));
}
