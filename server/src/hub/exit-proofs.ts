/**
 * Which exit IPs of one node connection are proven. An address is proven when the hub
 * sees a connection from it: the tunnel itself, or a proof the agent makes from that
 * address with the connection's one-time nonce. A private address (a home node behind
 * NAT) proven from a public one exits at that public address. An address another node
 * already holds is refused to the later one.
 */
import { randomBytes } from 'node:crypto';
import { plainAddress } from '@ipcola/shared/addresses';

export type ExitState = 'pending' | 'verified' | 'mismatch' | 'duplicate';

export interface ExitProof {
  /** As announced: the address the agent binds its egress connections to. */
  readonly ip: string;
  readonly state: ExitState;
  /** Where the proof came from, when it was not `ip`. */
  readonly seenFrom?: string;
  /** The address targets see, when it is not `ip` (NAT). */
  readonly publicIp?: string;
}

/** The address a verified or claimed exit takes in the network, if it has one yet. */
export function claimedAddress(proof: ExitProof): string | undefined {
  if (proof.state === 'verified') return proof.publicIp ?? proof.ip;
  if (proof.state === 'pending' && isPublic(proof.ip)) return proof.ip;
  return undefined;
}

export class ExitProofs {
  /** Presented by the agent with each proof; never reused by another connection. */
  readonly nonce = randomBytes(24).toString('base64url');
  readonly #proofs: Map<string, ExitProof>;

  /**
   * `tunnelFrom`: where the tunnel came from (an exit announced as that address needs no
   * proof); `heldElsewhere`: whether another node holds an address.
   */
  constructor(
    exitIps: readonly string[],
    tunnelFrom: string | undefined,
    heldElsewhere: (address: string) => boolean,
  ) {
    const from = tunnelFrom === undefined ? undefined : plain(tunnelFrom);
    this.#proofs = new Map(
      exitIps.map((ip): [string, ExitProof] => {
        if (heldElsewhere(ip)) return [ip, { ip, state: 'duplicate' }];
        return [ip, { ip, state: ip === from ? 'verified' : 'pending' }];
      }),
    );
  }

  list(): ExitProof[] {
    return [...this.#proofs.values()];
  }

  get pending(): number {
    return this.list().filter((proof) => proof.state === 'pending').length;
  }

  /**
   * Judges a proof of `ip` seen from `seen`; returns the exit's state after it, or
   * undefined when the connection never announced `ip`. Each address is judged once.
   */
  prove(
    ip: string,
    seen: string,
    heldElsewhere: (address: string) => boolean,
  ): ExitProof | undefined {
    const proof = this.#proofs.get(ip);
    if (proof?.state !== 'pending') return proof;
    const from = plain(seen);
    let next: ExitProof;
    if (from === ip)
      next = heldElsewhere(ip) ? { ip, state: 'duplicate' } : { ip, state: 'verified' };
    else if (!isPublic(ip) && isPublic(from)) {
      next = heldElsewhere(from)
        ? { ip, state: 'duplicate', seenFrom: from }
        : { ip, state: 'verified', seenFrom: from, publicIp: from };
    } else next = { ip, state: 'mismatch', seenFrom: from };
    this.#proofs.set(ip, next);
    return next;
  }
}

function plain(address: string): string {
  return plainAddress(address)?.toString() ?? address;
}

function isPublic(address: string): boolean {
  return plainAddress(address)?.range() === 'unicast';
}
