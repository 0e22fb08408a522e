/**
 * Accounts, users, API keys and node tokens: who may use the API, the proxy and the hub.
 * Role-neutral (no HTTP here): the API signs people up and issues keys, the gateway
 * verifies key secrets, the hub verifies node tokens. Secrets are stored only as
 * hashes: passwords with scrypt, key secrets and node tokens with HMAC-SHA-256 under
 * the pepper (see loadOrCreatePepper).
 */

import { createHmac } from 'node:crypto';
import type { Database, Queryable } from '../store/index.ts';
import {
  getKey,
  type IssuedKey,
  type IssueKeyOptions,
  issueKey,
  type KeyChanges,
  type KeyStanding,
  type KeyView,
  keyStanding,
  listKeys,
  passwordlessKey,
  revokeKey,
  rotateKey,
  updateKey,
  type VerifiedKey,
  verifyKey,
} from './keys.ts';
import { type NodeIdentity, nodeTokenCheck } from './node-token-check.ts';
import {
  deleteNode,
  listNodes,
  type NodeView,
  type RegisteredNode,
  type RegisterNodeOptions,
  registerNode,
  type VerifiedNode,
  verifyNodeToken,
} from './nodes.ts';
import { prepareStandIn } from './passwords.ts';
import { newId, PUBLIC_ID_LENGTH } from './secrets.ts';
import {
  type Account,
  getAccount,
  getUser,
  login,
  signup,
  type TrialCredit,
  type User,
} from './users.ts';

export type {
  IssuedKey,
  IssueKeyOptions,
  KeyChanges,
  KeyScope,
  KeyStanding,
  KeyView,
  VerifiedKey,
} from './keys.ts';
export { KEY_SCOPES } from './keys.ts';
export type {
  NodeType,
  NodeView,
  RegisteredNode,
  RegisterNodeOptions,
  VerifiedNode,
} from './nodes.ts';
export { checkNodeType } from './nodes.ts';
export { loadOrCreatePepper, loadOrCreateServerSecret } from './pepper.ts';
export {
  checkDisplayName,
  EMAIL_MAX_LENGTH,
  isDisplayName,
  isEmailAddress,
  NAME_MAX_LENGTH,
  PASSWORD_MAX_LENGTH,
  PASSWORD_MIN_LENGTH,
} from './rules.ts';
export type { Account, TrialCredit, User } from './users.ts';

/** A new public id for a key or a node: lowercase letters and digits, not secret. */
export function newPublicId(): string {
  return newId(PUBLIC_ID_LENGTH);
}

export interface AccountsOptions {
  /** The server secret from loadOrCreatePepper. */
  pepper: Buffer;
  /** Money credited to every new account (a `trial` journal entry); 0 grants none. */
  trialCredit: TrialCredit;
}

export interface Accounts {
  /**
   * A new account with its first user and the trial credit, in one transaction.
   * Throws `email_taken` when the email is in use (in any case), `invalid_request`
   * for an unusable email or a password outside 10-256 characters.
   */
  /** `within` runs in the signup's transaction, once the account exists. */
  signup(
    email: string,
    password: string,
    within?: (tx: Queryable, accountId: string) => Promise<void>,
  ): Promise<{ account: Account; user: User }>;
  /** The user when email (any case) and password match, else null; the same work either way. */
  login(email: string, password: string): Promise<User | null>;
  getUser(userId: string): Promise<User | null>;
  getAccount(accountId: string): Promise<Account | null>;
  /** A new key; its secret is in the answer and nowhere else. */
  issueKey(accountId: string, options?: IssueKeyOptions): Promise<IssuedKey>;
  /** The key when it is live and the secret matches, else null. */
  verifyKey(keyId: string, secret: string): Promise<VerifiedKey | null>;
  /**
   * The live key one of whose password-less ranges holds the client's address, with its
   * default targeting; null when none does (the connection then needs credentials).
   */
  passwordlessKey(address: string): Promise<(VerifiedKey & { defaultTargeting: string }) | null>;
  /** The account's live keys, oldest first, in keyset pages. */
  listKeys(
    accountId: string,
    page: { after?: { createdAt: Date; id: string }; limit: number },
  ): Promise<KeyView[]>;
  /** The key when it is the account's and not revoked, else null. */
  getKey(accountId: string, keyId: string): Promise<KeyView | null>;
  /** Changes name, disabled flag or limits; null when the key is not the account's. */
  updateKey(accountId: string, keyId: string, changes: KeyChanges): Promise<KeyView | null>;
  /** Revokes the key for good; false when it is not the account's. */
  revokeKey(accountId: string, keyId: string): Promise<boolean>;
  /** A new secret, shown once; the old one stops working. Null when not the account's. */
  rotateKey(accountId: string, keyId: string): Promise<IssuedKey | null>;
  /** Balance, monthly cap and state of each existing key, for the gateway's limits. */
  keyStanding(keyIds: readonly string[], monthStart: Date): Promise<KeyStanding[]>;
  /** A new exit node; its token (`<node id>.<secret>`) is in the answer and nowhere else. */
  registerNode(accountId: string, options?: RegisterNodeOptions): Promise<RegisteredNode>;
  /** The account's nodes that are not deleted, oldest first, in keyset pages. */
  listNodes(
    accountId: string,
    page: { after?: { createdAt: Date; id: string }; limit: number },
  ): Promise<NodeView[]>;
  /** Deletes the node (its token stops verifying); false when it is not the account's. */
  deleteNode(accountId: string, nodeId: string): Promise<boolean>;
  /** The node when it exists, is not deleted and the token matches, else null. */
  verifyNodeToken(token: string): Promise<VerifiedNode | null>;
  /**
   * The hub's check of node tokens: verifyNodeToken, standing on the database's last yes
   * for a token for graceMs while the database is down (node-token-check.ts).
   */
  nodeAuthenticator(graceMs: number): (token: string) => Promise<NodeIdentity | null>;
  /**
   * A 32-byte secret for one purpose (e.g. signing session cookies), derived from the
   * pepper: stable across restarts and the same on every server sharing the database.
   */
  deriveSecret(purpose: string): Buffer;
}

export function createAccounts(db: Database, options: AccountsOptions): Accounts {
  const { pepper, trialCredit } = options;
  if (pepper.length < 32) throw new RangeError('the pepper must be at least 32 bytes');
  if (!Number.isSafeInteger(trialCredit.micro) || trialCredit.micro < 0) {
    throw new RangeError('the trial credit must be whole micro-units, 0 or more');
  }
  // Prepares the stand-in hash now, so the first login for an unknown email is not slower.
  prepareStandIn();

  return {
    signup: (email, password, within) => signup(db, trialCredit, email, password, within),
    login: (email, password) => login(db, email, password),
    getUser: (userId) => getUser(db, userId),
    getAccount: (accountId) => getAccount(db, accountId),
    issueKey: (accountId, issueOptions) => issueKey(db, pepper, accountId, issueOptions),
    verifyKey: (keyId, secret) => verifyKey(db, pepper, keyId, secret),
    passwordlessKey: (address) => passwordlessKey(db, address),
    keyStanding: (keyIds, monthStart) => keyStanding(db, keyIds, monthStart),
    listKeys: (accountId, page) => listKeys(db, accountId, page),
    getKey: (accountId, keyId) => getKey(db, accountId, keyId),
    updateKey: (accountId, keyId, changes) => updateKey(db, accountId, keyId, changes),
    revokeKey: (accountId, keyId) => revokeKey(db, accountId, keyId),
    rotateKey: (accountId, keyId) => rotateKey(db, pepper, accountId, keyId),
    registerNode: (accountId, nodeOptions) => registerNode(db, pepper, accountId, nodeOptions),
    verifyNodeToken: (token) => verifyNodeToken(db, pepper, token),
    nodeAuthenticator: (graceMs) =>
      nodeTokenCheck((token) => verifyNodeToken(db, pepper, token), graceMs),
    listNodes: (accountId, page) => listNodes(db, accountId, page),
    deleteNode: (accountId, nodeId) => deleteNode(db, accountId, nodeId),
    deriveSecret: (purpose) =>
      createHmac('sha256', pepper).update(`ipcola derived secret: ${purpose}`).digest(),
  };
}
