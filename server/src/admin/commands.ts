/**
 * What an operator of IPCola does by hand: credit or debit an account with a reason,
 * put it on the postpaid plan, audit the ledger, see and set prices, see the spread. Every
 * movement of money a command makes goes through the journal, so it is on the record like
 * any other.
 */
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { EXIT_TYPES, type ExitType, isCountryCode, isExitType } from '@ipcola/shared/targeting';
import {
  auditLedger,
  books,
  createPriceBook,
  ensureDefaultPrices,
  formatMoney,
  parseMoney,
  postEntry,
  pricesInForce,
  spreadByExitType,
  transfer,
  utcDay,
} from '../billing/index.ts';
import type { Database } from '../store/index.ts';

/** A command line that cannot be carried out: printed with the usage, exit code 2. */
export class UsageError extends Error {}

/** A well-formed command that names what is not there: printed alone, exit code 1. */
export class AdminError extends Error {}

export const USAGE = `usage: npm run admin -- <command>
  credit ACCOUNT AMOUNT --reason TEXT [--reference REF]
  debit ACCOUNT AMOUNT --reason TEXT [--reference REF]
      add AMOUNT to an account's balance, or take it away; ACCOUNT is an account
      id or a user's email; a REF already used is not applied again
  balance ACCOUNT     the account's balance and what its nodes are owed
  postpaid ACCOUNT on|off [--credit-limit AMOUNT]
      bill the account's usage afterwards through Stripe's meter; it may spend down to
      minus its credit limit (kept when not given; 0 for a new postpaid account)
  audit               recompute every balance from the journal; exit 1 on any drift
  prices              the prices in force now
  prices set TYPE CUSTOMER OPERATOR [--country CC] [--from ISO-HOUR] [--note TEXT]
      per GB from a whole hour on (the next one by default); TYPE is ${EXIT_TYPES.join(', ')}
  spread [--from DAY] [--to DAY]
      per exit type: bytes, customer charges, operator earnings and the spread per GB,
      for UTC days from DAY to DAY (YYYY-MM-DD, both included; the last 30 by default)
`;

export interface AdminContext {
  database: Database;
  currency: string;
  print(line: string): void;
}

/** Runs one command; resolves to the process exit code. */
export async function runCommand(args: readonly string[], context: AdminContext): Promise<number> {
  const [command, ...rest] = args;
  switch (command) {
    case 'credit':
      return credit(rest, context, 1);
    case 'debit':
      return credit(rest, context, -1);
    case 'balance':
      return balance(rest, context);
    case 'postpaid':
      return postpaid(rest, context);
    case 'audit':
      return audit(context);
    case 'prices':
      return rest[0] === 'set' ? setPrice(rest.slice(1), context) : listPrices(context);
    case 'spread':
      return spread(rest, context);
    default:
      throw new UsageError(command ? `unknown command "${command}"` : 'a command is needed');
  }
}

async function credit(
  args: readonly string[],
  context: AdminContext,
  sign: 1 | -1,
): Promise<number> {
  const { values, positionals } = parse(args, {
    reason: { type: 'string' },
    reference: { type: 'string' },
  });
  const [who, amountText] = positionals;
  if (!who || !amountText || positionals.length > 2) {
    throw new UsageError(`${sign > 0 ? 'credit' : 'debit'} ACCOUNT AMOUNT`);
  }
  const parsed = parseMoney(amountText);
  if (parsed === null || parsed <= 0) {
    throw new UsageError(`"${amountText}" is not an amount above zero with at most six decimals`);
  }
  const amount = sign * parsed;
  const reason = values.reason?.trim();
  if (!reason) throw new UsageError('--reason is required: the journal keeps why');
  const account = await findAccount(context.database, who);
  const applied = await context.database.transaction((tx) =>
    postEntry(tx, {
      kind: 'adjustment',
      reference: values.reference ?? `admin:${randomUUID()}`,
      currency: account.currency,
      accountId: account.id,
      memo: reason,
      postings: transfer(books.promotions, books.customer(account.id), amount),
    }),
  );
  if (!applied) {
    context.print(`reference ${values.reference} was applied before: nothing done`);
    return 0;
  }
  const after = await findAccount(context.database, account.id);
  context.print(
    `${account.id}: ${amount > 0 ? 'credited' : 'debited'} ${formatMoney(Math.abs(amount))} ${after.currency}; balance ${formatMoney(after.balanceMicro)}`,
  );
  return 0;
}

async function balance(args: readonly string[], context: AdminContext): Promise<number> {
  const { positionals } = parse(args, {});
  if (positionals.length !== 1) throw new UsageError('balance ACCOUNT');
  const account = await findAccount(context.database, positionals[0] as string);
  context.print(
    `${account.id}: balance ${formatMoney(account.balanceMicro)} ${account.currency}, owed for nodes ${formatMoney(account.payableMicro)}`,
  );
  return 0;
}

async function postpaid(args: readonly string[], context: AdminContext): Promise<number> {
  const { values, positionals } = parse(args, { 'credit-limit': { type: 'string' } });
  const [who, state] = positionals;
  if (!who || (state !== 'on' && state !== 'off') || positionals.length > 2) {
    throw new UsageError('postpaid ACCOUNT on|off [--credit-limit AMOUNT]');
  }
  const limitText = values['credit-limit'];
  const limit = limitText === undefined ? null : parseMoney(limitText);
  if (limitText !== undefined && (limit === null || limit < 0)) {
    throw new UsageError(
      `"${limitText}" is not an amount of at least zero with at most six decimals`,
    );
  }
  const account = await findAccount(context.database, who);
  const [row] = await context.database.query<{ credit_limit_micro: number }>(
    `UPDATE accounts SET postpaid = $2, credit_limit_micro = coalesce($3, credit_limit_micro)
     WHERE id = $1 RETURNING credit_limit_micro`,
    [account.id, state === 'on', limit],
  );
  context.print(
    state === 'on'
      ? `${account.id}: postpaid, credit limit ${formatMoney(row?.credit_limit_micro ?? 0)} ${account.currency}`
      : `${account.id}: prepaid`,
  );
  return 0;
}

async function audit(context: AdminContext): Promise<number> {
  const drifts = await auditLedger(context.database);
  const [counts] = await context.database.query<{ entries: number; accounts: number }>(
    'SELECT (SELECT count(*) FROM journal_entries)::int8 AS entries, (SELECT count(*) FROM accounts)::int8 AS accounts',
  );
  for (const drift of drifts) {
    context.print(
      `drift: ${drift.check} ${drift.subject}: expected ${drift.expected}, found ${drift.found}`,
    );
  }
  context.print(
    `audit: ${drifts.length === 0 ? 'clean' : `${drifts.length} drift(s)`} (${counts?.entries ?? 0} journal entries, ${counts?.accounts ?? 0} accounts)`,
  );
  return drifts.length === 0 ? 0 : 1;
}

async function listPrices(context: AdminContext): Promise<number> {
  // What the server would start with, when nothing was set yet.
  await ensureDefaultPrices(context.database, context.currency);
  const prices = await pricesInForce(context.database, context.currency, new Date());
  for (const price of prices) {
    context.print(
      `${price.exitType.padEnd(11)} ${(price.country || '*').padEnd(2)}  customer ${formatMoney(price.customerMicroPerGb)}/GB  operator ${formatMoney(price.operatorMicroPerGb)}/GB  ${context.currency}  since ${price.effectiveFrom.toISOString()}`,
    );
  }
  return 0;
}

async function setPrice(args: readonly string[], context: AdminContext): Promise<number> {
  const { values, positionals } = parse(args, {
    country: { type: 'string' },
    from: { type: 'string' },
    note: { type: 'string' },
  });
  const [type, customerText, operatorText] = positionals;
  if (!type || !customerText || !operatorText || positionals.length > 3) {
    throw new UsageError('prices set TYPE CUSTOMER OPERATOR');
  }
  if (!isExitType(type)) throw new UsageError(`TYPE must be one of ${EXIT_TYPES.join(', ')}`);
  const customer = parseMoney(customerText);
  const operator = parseMoney(operatorText);
  if (customer === null || customer < 0 || operator === null || operator < 0) {
    throw new UsageError('CUSTOMER and OPERATOR are amounts per GB, e.g. 4.00 0.40');
  }
  const country = values.country?.toLowerCase();
  if (country !== undefined && !isCountryCode(country)) {
    throw new UsageError(`--country ${values.country} is not an assigned ISO 3166-1 code`);
  }
  const from = values.from === undefined ? undefined : new Date(values.from);
  if (from && Number.isNaN(from.getTime())) throw new UsageError('--from is not a date and time');
  const book = await createPriceBook(context.database, { currency: context.currency });
  try {
    const price = await book.set({
      exitType: type as ExitType,
      customerMicroPerGb: customer,
      operatorMicroPerGb: operator,
      ...(country ? { country } : {}),
      ...(from ? { effectiveFrom: from } : {}),
      note: values.note ?? 'admin',
    });
    context.print(
      `${price.exitType} ${price.country || '*'}: customer ${formatMoney(price.customerMicroPerGb)}/GB, operator ${formatMoney(price.operatorMicroPerGb)}/GB from ${price.effectiveFrom.toISOString()}`,
    );
  } finally {
    book.close();
  }
  return 0;
}

const DAY_MS = 86_400_000;

async function spread(args: readonly string[], context: AdminContext): Promise<number> {
  const { values, positionals } = parse(args, {
    from: { type: 'string' },
    to: { type: 'string' },
  });
  if (positionals.length > 0) throw new UsageError('spread [--from DAY] [--to DAY]');
  const day = (text: string | undefined, name: string): Date | undefined => {
    if (text === undefined) return undefined;
    const at = new Date(`${text}T00:00:00Z`);
    if (Number.isNaN(at.getTime()) || utcDay(at) !== text) {
      throw new UsageError(`--${name} ${text} is not a day (YYYY-MM-DD)`);
    }
    return at;
  };
  const last = day(values.to, 'to') ?? new Date(Date.parse(utcDay(new Date())));
  const first = day(values.from, 'from') ?? new Date(last.getTime() - 29 * DAY_MS);
  if (first > last) throw new UsageError('--from must not be after --to');
  const lines = await spreadByExitType(context.database, {
    from: first,
    to: new Date(last.getTime() + DAY_MS),
  });
  const money = (micro: number) => formatMoney(micro).padStart(14);
  context.print(`spread ${utcDay(first)} to ${utcDay(last)} (${context.currency})`);
  context.print(
    `${'exit type'.padEnd(11)} ${'bytes'.padStart(16)} ${'customers'.padStart(14)} ${'operators'.padStart(14)} ${'spread'.padStart(14)} ${'spread/GB'.padStart(14)}`,
  );
  for (const line of lines) {
    const perGb = line.spreadMicroPerGb === null ? '-' : formatMoney(line.spreadMicroPerGb);
    context.print(
      `${line.exitType.padEnd(11)} ${String(line.bytes).padStart(16)} ${money(line.chargedMicro)} ${money(line.earnedMicro)} ${money(line.spreadMicro)} ${perGb.padStart(14)}`,
    );
  }
  return 0;
}

interface FoundAccount {
  id: string;
  currency: string;
  balanceMicro: number;
  payableMicro: number;
}

async function findAccount(db: Database, who: string): Promise<FoundAccount> {
  const [row] = await db.query<{
    id: string;
    currency: string;
    balance_micro: number;
    payable_micro: number;
  }>(
    `SELECT a.id, a.currency, a.balance_micro, a.payable_micro FROM accounts a
     WHERE a.id = $1 OR a.id = (SELECT account_id FROM users WHERE lower(email) = lower($1))`,
    [who],
  );
  if (!row) throw new AdminError(`no account with the id or user email ${who}`);
  return {
    id: row.id,
    currency: row.currency,
    balanceMicro: row.balance_micro,
    payableMicro: row.payable_micro,
  };
}

function parse(
  args: readonly string[],
  options: NonNullable<Parameters<typeof parseArgs>[0]>['options'],
) {
  try {
    return parseArgs({
      args: [...args],
      options: options ?? {},
      allowPositionals: true,
      strict: true,
    }) as {
      values: Record<string, string | undefined>;
      positionals: string[];
    };
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
}
