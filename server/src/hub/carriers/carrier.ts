/**
 * What the hub needs from a node's tunnel connection, whichever protocol it speaks
 * (HTTP/2 for v1 agents, the multiplexer for v2): open streams, hear the node's
 * answers, PING, drain and cut.
 */
import type { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import type { Pingable } from '@ipcola/shared/protocol';

/** A stream asked of the node, before and after its answer. */
export interface Opening {
  readonly stream: Duplex;
  /** Calls `listener` once with the node's answer; the returned function stops listening. */
  whenAnswered(listener: (status: number, code: unknown) => void): () => void;
  /** Tells the node to drop the stream: nobody wants it any more. */
  cancel(): void;
  /** The node's reset code, once it reset the stream. */
  readonly resetCode: number | undefined;
}

export interface CarrierEvents {
  /** The node's first settings arrived: it speaks the protocol and takes streams. */
  ready: [];
  /** The node said GOAWAY: no new streams, open ones carry on. */
  goaway: [];
  error: [error: Error];
  close: [];
}

export interface Carrier extends EventEmitter<CarrierEvents> {
  /** Closing or closed: takes no new stream. */
  readonly ending: boolean;
  /** The node's stream limit from its settings, once they arrived. */
  readonly maxStreams: number | undefined;
  /** What the heart-beat PINGs. */
  readonly pingable: Pingable;
  /** Asks the node for a stream; throws when the connection takes no new one. */
  open(authority: string, exitIp: string, label: string | undefined): Opening;
  /** GOAWAY (`why` for the node's log), then closes once the open streams are done. */
  close(why?: string): void;
  /** Ends the connection and its socket now. */
  destroy(): void;
}
