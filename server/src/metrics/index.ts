/**
 * Prometheus metrics (prom-client), one registry per server: what the proxy carries and
 * refuses, how long exit selection takes, what is online, plus Node's process metrics.
 * Labels are closed sets (protocols, directions, catalogue codes): never a key, an
 * address or a target, which would leak customers' identities and grow without bound.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

const PROXY_PROTOCOLS = ['http', 'connect', 'socks5'] as const;
export type ProxyProtocol = (typeof PROXY_PROTOCOLS)[number];

export type HopSide = 'out' | 'in';

/** What the gateway reports as it works. */
export interface GatewayObserver {
  /** A forwarded request got an exit, or a tunnel opened. */
  opened(protocol: ProxyProtocol): void;
  /** A refusal with its catalogue code. */
  refused(protocol: ProxyProtocol, code: string): void;
  /** One exit selection took this long. */
  selected(seconds: number): void;
}

export interface Metrics {
  readonly registry: Registry;
  readonly gateway: GatewayObserver;
  /** Metered bytes, both directions, as they are recorded for billing. */
  countBytes(up: number, down: number): void;
  /** A stream crossed the hop between instances: relayed out to the holder, or served in. */
  countHop(side: HopSide): void;
  /** Read at each scrape. */
  watch(sources: {
    onlineExits(): number;
    openTunnels(): number;
    /** Connected nodes by the tunnel version they speak. */
    onlineNodes(): { v1: number; v2: number };
  }): void;
}

export function createMetrics(): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'ipcola_' });

  // Counted in plain numbers as connections come and go, and handed to prom-client when
  // scraped: its inc() hashes the labels on every call, 4 µs of every new tunnel (bench
  // profile of the new-tunnel path, 2026-12-06).
  const openedSince = { http: 0, connect: 0, socks5: 0 } satisfies Record<ProxyProtocol, number>;
  const bytesSince = { up: 0, down: 0 };
  new Counter({
    name: 'ipcola_proxy_connections_total',
    help: 'Forwarded requests that got an exit, and tunnels opened, by protocol.',
    labelNames: ['protocol'],
    registers: [registry],
    collect() {
      for (const protocol of PROXY_PROTOCOLS) {
        this.inc({ protocol }, openedSince[protocol]);
        openedSince[protocol] = 0;
      }
    },
  });
  const refused = new Counter({
    name: 'ipcola_proxy_refusals_total',
    help: 'Refusals by protocol and error code (README, Proxy errors).',
    labelNames: ['protocol', 'code'],
    registers: [registry],
  });
  new Counter({
    name: 'ipcola_proxy_bytes_total',
    help: 'Bytes on the customer side of the gateway, metered for billing, by direction.',
    labelNames: ['direction'],
    registers: [registry],
    collect() {
      this.inc({ direction: 'up' }, bytesSince.up);
      this.inc({ direction: 'down' }, bytesSince.down);
      bytesSince.up = 0;
      bytesSince.down = 0;
    },
  });
  const hops = new Counter({
    name: 'ipcola_hop_streams_total',
    help:
      'Streams over the hop between instances: out, relayed to the instance holding the exit; ' +
      'in, served for another instance. Within one host of WORKERS, non-zero only while an agent attaches.',
    labelNames: ['side'],
    registers: [registry],
  });
  // Both sides from the start: a zero says "no hop", an absent series says nothing.
  hops.inc({ side: 'out' }, 0);
  hops.inc({ side: 'in' }, 0);
  const selection = new Histogram({
    name: 'ipcola_exit_selection_seconds',
    help: 'Time to choose an exit for a connection.',
    buckets: [1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3],
    registers: [registry],
  });

  return {
    registry,
    gateway: {
      opened: (protocol) => {
        openedSince[protocol] += 1;
      },
      refused: (protocol, code) => refused.inc({ protocol, code }),
      selected: (seconds) => selection.observe(seconds),
    },
    countBytes(up, down) {
      bytesSince.up += up;
      bytesSince.down += down;
    },
    countHop: (side) => hops.inc({ side }),
    watch(sources) {
      new Gauge({
        name: 'ipcola_exits_online',
        help: 'Exit IPs this gateway can lease now.',
        registers: [registry],
        collect() {
          this.set(sources.onlineExits());
        },
      });
      new Gauge({
        name: 'ipcola_nodes_online',
        help: 'Exit-node agents connected to this hub, by tunnel version (v1: HTTP/2, older agents).',
        labelNames: ['tunnel'],
        registers: [registry],
        collect() {
          const { v1, v2 } = sources.onlineNodes();
          this.set({ tunnel: 'v1' }, v1);
          this.set({ tunnel: 'v2' }, v2);
        },
      });
      new Gauge({
        name: 'ipcola_tunnels_open',
        help: 'CONNECT and SOCKS5 tunnels open now.',
        registers: [registry],
        collect() {
          this.set(sources.openTunnels());
        },
      });
    },
  };
}
