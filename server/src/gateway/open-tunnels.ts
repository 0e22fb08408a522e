import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { spliceStreams } from '@ipcola/shared/splice';
import type { SocketMeter, UsageMeter, UsageOwner } from '../metering/index.ts';
import type { Allowance } from './allowance.ts';

export interface TunnelParties extends UsageOwner {
  client: Socket;
  upstream: Duplex;
  /**
   * Every chunk either way passes it before it is written; closed when the tunnel ends.
   * Priced at the tunnel's exit already.
   */
  allowance: Allowance;
  /** Runs once when the tunnel is over: frees slots and exit load. */
  onEnd(result: { bytesUp: number; bytesDown: number; error?: Error }): void;
}

/**
 * Every open CONNECT and SOCKS tunnel: spliced with the one tunnel helper, gated by its
 * allowance, and metered on the customer's socket, both on close and periodically, so
 * long tunnels show up in usage (and in balances) while they are still open.
 */
interface OpenTunnel {
  meter: SocketMeter;
  owner: UsageOwner;
  allowance: Allowance;
}

export class OpenTunnels {
  readonly #open = new Set<OpenTunnel>();
  readonly #timer: NodeJS.Timeout;

  constructor(
    private readonly usage: UsageMeter,
    private readonly idleTimeoutMs: number,
    meterIntervalMs: number,
  ) {
    this.#timer = setInterval(() => this.#meterAll(), meterIntervalMs);
    this.#timer.unref();
  }

  get size(): number {
    return this.#open.size;
  }

  /**
   * Splices client and upstream. `meter` must be the client socket's meter, so that bytes
   * the socket carried before (the CONNECT request, the SOCKS handshake) are counted too.
   */
  run(parties: TunnelParties, meter: SocketMeter): void {
    const entry: OpenTunnel = {
      meter,
      owner: {
        keyId: parties.keyId,
        nodeId: parties.nodeId,
        country: parties.country,
      },
      allowance: parties.allowance,
    };
    this.#open.add(entry);
    spliceStreams(parties.client, parties.upstream, {
      idleTimeoutMs: this.idleTimeoutMs,
      gate: parties.allowance,
      onEnd: (result) => {
        this.#open.delete(entry);
        // A tunnel counts as one request, when it ends.
        this.#meter(entry, 1);
        entry.allowance.close();
        parties.onEnd({
          bytesUp: result.bytesAtoB,
          bytesDown: result.bytesBtoA,
          ...(result.error ? { error: result.error } : {}),
        });
      },
    });
  }

  /** Records what every open tunnel moved since its last metering (limits read it right after). */
  meterNow(): void {
    this.#meterAll();
  }

  #meterAll(): void {
    for (const entry of this.#open) this.#meter(entry, 0);
  }

  #meter(entry: OpenTunnel, requests: number): void {
    const delta = entry.meter.take();
    // At the tunnel's price: its exit was chosen before it opened, and never changes.
    const used = entry.allowance.settle(delta.up + delta.down);
    const { keyId, nodeId, country } = entry.owner;
    this.usage.record({ keyId, nodeId, country, up: delta.up, down: delta.down, requests, used });
  }

  close(): void {
    clearInterval(this.#timer);
    this.#meterAll();
  }
}
