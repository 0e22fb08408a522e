/**
 * Proving the exit IPs to the hub: for each announced address, one POST made from that
 * address with the connection's one-time nonce, so that the hub sees with its own eyes
 * where this node's traffic leaves from. Addresses it does not see so carry no traffic.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import type { ConnectionOptions } from 'node:tls';
import {
  EXIT_IP_HEADER,
  EXIT_PROOF_HEADER,
  EXIT_PROOF_PATH,
  type TunnelLogger,
} from '@ipcola/shared/protocol';
import { pinnedLookup } from './dial.ts';

export interface ProofOptions {
  readonly host: string;
  readonly port: number;
  /** The hub address the tunnel went to: the nonce is known only there. */
  readonly address?: { readonly address: string; readonly family: 4 | 6 };
  readonly tls: false | ConnectionOptions;
  readonly nonce: string;
  readonly exitIps: readonly string[];
  readonly timeoutMs: number;
  readonly signal: AbortSignal;
  readonly logger: TunnelLogger;
  /** Waits before the 2nd, 3rd... attempt at one address (tests shorten them). */
  readonly retryDelaysMs?: readonly number[];
}

/** At most this many proofs in flight: a /24 pool proves in a few round trips. */
const PARALLEL = 16;

/**
 * A proof is made once per connection, so an answer that may change is asked again: 404
 * (an instance of several that has not yet heard of this connection: the registry
 * reaches it within a second), 503 (the holding instance did not answer), no answer at
 * all. 200 and 409 (another node's address, or seen from elsewhere) are final. About 7 s
 * in all, then the address stays unproven until the agent reconnects.
 */
const RETRY_DELAYS_MS = [500, 1_500, 5_000];

const FINAL = new Set([200, 409]);

/** Proves every exit IP; never rejects (each failure is logged, the hub keeps it unproven). */
export async function proveExits(options: ProofOptions): Promise<void> {
  const queue = [...options.exitIps];
  const worker = async () => {
    for (let ip = queue.shift(); ip !== undefined; ip = queue.shift()) {
      await proveWithRetries(options, ip);
    }
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, queue.length) }, worker));
}

async function proveWithRetries(options: ProofOptions, ip: string): Promise<void> {
  const delays = options.retryDelaysMs ?? RETRY_DELAYS_MS;
  for (let attempt = 0; ; attempt++) {
    if (options.signal.aborted) return;
    const last = attempt >= delays.length;
    const outcome = await proveOne(options, ip).then(
      (answer) => answer,
      (error: Error) => error,
    );
    // The connection closed: the next one proves its own exits.
    if (options.signal.aborted) return;
    if (outcome instanceof Error) {
      if (last) {
        options.logger.warn({ ip, err: outcome }, 'could not prove an exit IP to the hub');
        return;
      }
    } else if (outcome.status === 200) {
      options.logger.debug({ ip, attempts: attempt + 1 }, 'exit IP proven');
      return;
    } else if (last || FINAL.has(outcome.status)) {
      options.logger.warn(
        { ip, status: outcome.status, reason: outcome.line, attempts: attempt + 1 },
        'the hub did not accept an exit IP',
      );
      return;
    }
    // Jitter: the addresses of a pool that failed together do not all come back at once.
    const wait = (delays[attempt] as number) * (0.75 + Math.random() / 2);
    await delay(wait, undefined, { signal: options.signal }).catch(() => {});
  }
}

function proveOne(options: ProofOptions, ip: string): Promise<{ status: number; line: string }> {
  const request = options.tls ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request({
      ...(options.tls || {}),
      host: options.host,
      port: options.port,
      path: EXIT_PROOF_PATH,
      method: 'POST',
      // The proof is where the connection comes from: bound to the exit IP, and the hub's
      // name resolved in the exit IP's family, unless the tunnel's hub address is of that
      // family (another address of the name may be another hub that never gave the nonce).
      localAddress: ip,
      family: isIP(ip),
      ...(options.address?.family === isIP(ip) ? { lookup: pinnedLookup(options.address) } : {}),
      agent: false,
      signal: AbortSignal.any([options.signal, AbortSignal.timeout(options.timeoutMs)]),
      headers: { [EXIT_PROOF_HEADER]: options.nonce, [EXIT_IP_HEADER]: ip, 'Content-Length': 0 },
    });
    req.once('error', reject);
    req.once('response', (res: IncomingMessage) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (text.length < 512) text += chunk;
      });
      res.once('end', () =>
        resolve({ status: res.statusCode ?? 0, line: text.split('\n', 1)[0] ?? '' }),
      );
      res.once('error', reject);
    });
    req.end();
  });
}
