/**
 * The spread: per exit type, what customers were charged and operators earned for the
 * same bytes, and what the business kept, from the hourly usage rows of a range of days.
 */
import { EXIT_TYPES, type ExitType } from '@ipcola/shared/targeting';
import type { Queryable } from '../store/index.ts';
import { BYTES_PER_GB } from './money.ts';

export interface SpreadLine {
  exitType: ExitType | 'total';
  bytes: number;
  chargedMicro: number;
  earnedMicro: number;
  /** What the business kept: charged less earned. */
  spreadMicro: number;
  /** The spread per GB of these bytes, rounded down; null without bytes. */
  spreadMicroPerGb: number | null;
}

function line(
  exitType: SpreadLine['exitType'],
  bytes: number,
  chargedMicro: number,
  earnedMicro: number,
): SpreadLine {
  const spreadMicro = chargedMicro - earnedMicro;
  return {
    exitType,
    bytes,
    chargedMicro,
    earnedMicro,
    spreadMicro,
    spreadMicroPerGb:
      bytes === 0 ? null : Number((BigInt(spreadMicro) * BigInt(BYTES_PER_GB)) / BigInt(bytes)),
  };
}

/** One line per exit type (all of them, zero when unused), then the total, for usage hours in [from, to). */
export async function spreadByExitType(
  db: Queryable,
  range: { from: Date; to: Date },
): Promise<SpreadLine[]> {
  const rows = await db.query<{
    exit_type: ExitType;
    bytes: number;
    charged: number;
    earned: number;
  }>(
    `SELECT exit_type, sum(bytes_up + bytes_down)::bigint AS bytes,
            sum(charged_micro)::bigint AS charged, sum(earned_micro)::bigint AS earned
     FROM usage_hourly WHERE hour >= $1 AND hour < $2 GROUP BY exit_type`,
    [range.from, range.to],
  );
  const byType = new Map(rows.map((row) => [row.exit_type, row]));
  const lines = EXIT_TYPES.map((type) => {
    const row = byType.get(type);
    return line(type, row?.bytes ?? 0, row?.charged ?? 0, row?.earned ?? 0);
  });
  const sum = (pick: (l: SpreadLine) => number) => lines.reduce((a, l) => a + pick(l), 0);
  lines.push(
    line(
      'total',
      sum((l) => l.bytes),
      sum((l) => l.chargedMicro),
      sum((l) => l.earnedMicro),
    ),
  );
  return lines;
}
