/**
 * Money: prices per exit type, the double-entry journal and the balances it keeps, and the
 * audit that recomputes them. Role-neutral (no HTTP): the flusher posts usage and earnings,
 * the API shows statements, the admin command credits and audits.
 */
export { auditLedger, type Drift } from './audit.ts';
export {
  type AutoTopUpChanges,
  type AutoTopUpSettings,
  readAutoTopUp,
  saveAutoTopUp,
} from './auto-topup-settings.ts';
export { type BalanceWatcherOptions, balanceWatcher, moneyData } from './balance-alerts.ts';
export {
  CHECKOUT_MAX_MICRO,
  CHECKOUT_MIN_MICRO,
  CREDIT_PACKS,
  type CreditPack,
  checkoutAmount,
} from './credit-packs.ts';
export { type EarningDay, earningsHeldBack, nodeEarningsByDay, utcDay } from './earnings.ts';
export {
  books,
  type Entry,
  type EntryKind,
  type Posting,
  postEntry,
  transfer,
} from './journal.ts';
export {
  BYTES_PER_GB,
  bytesFor,
  costOf,
  formatMoney,
  MICRO_PER_MINOR,
  MICRO_PER_UNIT,
  microPerStripeUnit,
  parseMoney,
  stripeAmountStep,
} from './money.ts';
export {
  createPriceBook,
  DEFAULT_PRICES,
  ensureDefaultPrices,
  type Price,
  type PriceBook,
  type PriceChange,
  pricesInForce,
} from './prices.ts';
export { type SpreadLine, spreadByExitType } from './spread.ts';
export { type StatementLine, type StatementPosition, statementLines } from './statements.ts';
