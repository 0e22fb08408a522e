import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { spliceStreams } from '@ipcola/agent/protocol';
import type { SocketMeter, UsageMeter, UsageOwner } from '../metering/index.ts';

export interface TunnelParties extends UsageOwner {
  client: Socket;
  upstream: Duplex;
  /** Runs once when the tunnel is over: frees slots and exit load. */
  onEnd(result: { bytesUp: number; bytesDown: number; error?: Error }): void;
}

/**
 * Every open CONNECT and SOCKS tunnel: spliced with the one tunnel helper and metered on
 * the customer's socket, both on close and periodically, so long tunnels show up in usage
 * (and in balances) while they are still open.
 */
export class OpenTunnels {
  readonly #open = new Set<{ meter: SocketMeter; owner: UsageOwner }>();
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
    const entry = {
      meter,
      owner: { keyId: parties.keyId, nodeId: parties.nodeId, country: parties.country },
    };
    this.#open.add(entry);
    spliceStreams(parties.client, parties.upstream, {
      idleTimeoutMs: this.idleTimeoutMs,
      onEnd: (result) => {
        this.#open.delete(entry);
        const last = meter.take();
        // A tunnel counts as one request, when it ends.
        this.usage.record({ ...entry.owner, ...last, requests: 1 });
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
    for (const entry of this.#open) {
      const delta = entry.meter.take();
      this.usage.record({ ...entry.owner, ...delta, requests: 0 });
    }
  }

  close(): void {
    clearInterval(this.#timer);
    this.#meterAll();
  }
}
