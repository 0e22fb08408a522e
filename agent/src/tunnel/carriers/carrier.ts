/**
 * What the agent needs from its tunnel connection, whichever protocol the hub chose
 * (HTTP/2 for a v1 hub, the multiplexer for v2): the hub's stream requests, PING,
 * drain and cut.
 */
import type { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import type { Pingable } from '@ipcola/shared/protocol';

/** One stream the hub asked for, as it asked: the agent checks every field. */
export interface IncomingStream {
  readonly stream: Duplex;
  /** False for anything but a CONNECT (only HTTP/2 can ask for anything else). */
  readonly isConnect: boolean;
  readonly authority: string | undefined;
  readonly exitIp: unknown;
  readonly label: unknown;
  /** Answers 200: the stream carries the egress connection from now on. */
  accept(): void;
  /** Answers a refusal with its tunnel error code; the stream is done. */
  refuse(status: number, code: string): void;
}

export interface ServingCarrierEvents {
  stream: [incoming: IncomingStream];
  /** The hub said GOAWAY, with its reason for the log. */
  goaway: [reason: string | undefined];
  error: [error: Error];
  close: [];
}

export interface ServingCarrier extends EventEmitter<ServingCarrierEvents> {
  /** We said GOAWAY or the connection is gone: new streams are refused. */
  readonly closed: boolean;
  readonly pingable: Pingable;
  close(): void;
  destroy(): void;
}
