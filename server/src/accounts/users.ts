import { books, postEntry, transfer } from '../billing/index.ts';
import { ipcolaError } from '../errors/index.ts';
import type { Database, Queryable } from '../store/index.ts';
import { hashPassword, verifyNothing, verifyPassword } from './passwords.ts';
import {
  characterCount,
  EMAIL_MAX_LENGTH,
  isEmailAddress,
  PASSWORD_MAX_LENGTH,
  PASSWORD_MIN_LENGTH,
} from './rules.ts';
import { newId } from './secrets.ts';

export interface Account {
  id: string;
  currency: string;
  /** What the customer may still spend, in micro-units: minus the sum of its journal book. */
  balanceMicro: number;
  /** What is owed to the account for its nodes' traffic, in micro-units. */
  payableMicro: number;
  createdAt: Date;
}

/** Money a new account starts with: the trial credit, in its currency. */
export interface TrialCredit {
  currency: string;
  micro: number;
}

export interface User {
  id: string;
  accountId: string;
  email: string;
  createdAt: Date;
}

const ACCOUNT_ID_LENGTH = 16;

interface UserRow {
  id: string;
  account_id: string;
  email: string;
  created_at: Date;
}

interface AccountRow {
  id: string;
  currency: string;
  balance_micro: number;
  payable_micro: number;
  created_at: Date;
}

const toUser = (row: UserRow): User => ({
  id: row.id,
  accountId: row.account_id,
  email: row.email,
  createdAt: row.created_at,
});

const toAccount = (row: AccountRow): Account => ({
  id: row.id,
  currency: row.currency,
  balanceMicro: row.balance_micro,
  payableMicro: row.payable_micro,
  createdAt: row.created_at,
});

// One spelling of a password whichever way the keyboard composed it.
const normalise = (password: string) => password.normalize('NFC');

export async function signup(
  db: Database,
  trial: TrialCredit,
  email: string,
  password: string,
  within?: (tx: Queryable, accountId: string) => Promise<void>,
): Promise<{ account: Account; user: User }> {
  if (!isEmailAddress(email)) {
    throw ipcolaError('invalid_request', 'email is not a valid email address');
  }
  const length = characterCount(password);
  if (length < PASSWORD_MIN_LENGTH || length > PASSWORD_MAX_LENGTH) {
    throw ipcolaError(
      'invalid_request',
      `password must be ${PASSWORD_MIN_LENGTH}-${PASSWORD_MAX_LENGTH} characters`,
    );
  }
  // Fails fast before the costly hash; the unique index below is what guarantees it.
  if (await emailTaken(db, email)) throw emailTakenError();
  const passwordHash = await hashPassword(normalise(password));

  try {
    return await db.transaction(async (tx) => {
      const accountId = `acct_${newId(ACCOUNT_ID_LENGTH)}`;
      await tx.query('INSERT INTO accounts (id, currency) VALUES ($1, $2)', [
        accountId,
        trial.currency,
      ]);
      const [user] = await tx.query<UserRow>(
        `INSERT INTO users (id, account_id, email, password_hash) VALUES ($1, $2, $3, $4)
         RETURNING id, account_id, email, created_at`,
        [`user_${newId(ACCOUNT_ID_LENGTH)}`, accountId, email, passwordHash],
      );
      if (trial.micro > 0) {
        // One trial per account: the journal's (kind, reference) is unique.
        await postEntry(tx, {
          kind: 'trial',
          reference: accountId,
          currency: trial.currency,
          accountId,
          memo: 'trial credit',
          postings: transfer(books.promotions, books.customer(accountId), trial.micro),
        });
      }
      await within?.(tx, accountId);
      const account = await readAccount(tx, accountId);
      if (!user || !account) throw new Error('signup: inserted rows are missing');
      return { account, user: toUser(user) };
    });
  } catch (error) {
    if (isUniqueViolation(error, 'users_email_unique')) throw emailTakenError();
    throw error;
  }
}

/** The user when the email (any case) and password match; null otherwise, after the same work. */
export async function login(db: Queryable, email: string, password: string): Promise<User | null> {
  const [row] =
    email.length <= EMAIL_MAX_LENGTH
      ? await db.query<UserRow & { password_hash: string }>(
          `SELECT id, account_id, email, created_at, password_hash
           FROM users WHERE lower(email) = lower($1)`,
          [email],
        )
      : [];
  if (!row) return verifyNothing(normalise(password)).then(() => null);
  return (await verifyPassword(normalise(password), row.password_hash)) ? toUser(row) : null;
}

export async function getUser(db: Queryable, userId: string): Promise<User | null> {
  const [row] = await db.query<UserRow>(
    'SELECT id, account_id, email, created_at FROM users WHERE id = $1',
    [userId],
  );
  return row ? toUser(row) : null;
}

export function getAccount(db: Queryable, accountId: string): Promise<Account | null> {
  return readAccount(db, accountId);
}

async function readAccount(db: Queryable, accountId: string): Promise<Account | null> {
  const [row] = await db.query<AccountRow>(
    'SELECT id, currency, balance_micro, payable_micro, created_at FROM accounts WHERE id = $1',
    [accountId],
  );
  return row ? toAccount(row) : null;
}

async function emailTaken(db: Queryable, email: string): Promise<boolean> {
  const rows = await db.query('SELECT 1 FROM users WHERE lower(email) = lower($1)', [email]);
  return rows.length > 0;
}

function emailTakenError() {
  return ipcolaError('email_taken', 'An account with this email already exists');
}

export function isUniqueViolation(error: unknown, constraint: string): boolean {
  const failure = error as { code?: unknown; constraint?: unknown } | null;
  return failure?.code === '23505' && failure.constraint === constraint;
}
