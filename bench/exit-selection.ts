/**
 * Exit selection at scale, run as its own process on the proxy core: the gateway's real
 * ExitIndex with 1,000,000 registered exits, timing select() for several kinds of
 * targeting. Prints one JSON line.
 *
 *   node --import tsx bench/exit-selection.ts [--exits N] [--batches N] [--batch-ms N]
 *
 * The population (deterministic): 50 countries x 8 cities, 10 exits per node; types
 * 70% residential, 25% datacenter, 5% mobile; ASNs from a pool of 2,000, except that
 * 20 exits carry a rare ASN of their own (the "rare" targeting case).
 */
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import type { Targeting } from '../server/src/gateway/credentials.ts';
import { type Exit, ExitIndex, type ExitType } from '../server/src/gateway/exit-index.ts';

const { values } = parseArgs({
  options: {
    exits: { type: 'string', default: '1000000' },
    batches: { type: 'string', default: '9' },
    'batch-ms': { type: 'string', default: '40' },
  },
});
const EXITS = Number(values.exits);
const BATCHES = Number(values.batches);
const BATCH_MS = Number(values['batch-ms']);

const COUNTRIES = (
  'us de gb fr nl ca au jp br in it es pl se no fi dk ch at be ie pt cz ro hu gr tr ua ru ' +
  'mx ar cl co pe za eg ng ke il ae sa sg my th vn id ph kr tw hk nz'
).split(' ');
const CITIES_PER_COUNTRY = 8;
const EXITS_PER_NODE = 10;
const ASN_POOL = 2_000;
const RARE_ASN = 4_200_000_001;
const RARE_COUNT = 20;

/** mulberry32: a small deterministic PRNG, so every run builds the same population. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const random = prng(42);
const index = new ExitIndex();
const rareEvery = Math.floor(EXITS / RARE_COUNT);
const heapBefore = process.memoryUsage().heapUsed;
const buildStart = performance.now();
for (let i = 0; i < EXITS; i++) {
  const nodeId = `n${Math.floor(i / EXITS_PER_NODE)}`;
  const ip = `10.${(i >>> 16) & 255}.${(i >>> 8) & 255}.${i & 255}`;
  const r = random();
  const type: ExitType = r < 0.7 ? 'residential' : r < 0.95 ? 'datacenter' : 'mobile';
  const country = COUNTRIES[Math.floor(random() * COUNTRIES.length)] as string;
  const city = `city_${Math.floor(random() * CITIES_PER_COUNTRY)}`;
  const asn = i % rareEvery === 7 ? RARE_ASN : 1_000 + Math.floor(random() * ASN_POOL);
  const exit: Exit = { id: `${nodeId}/${ip}`, nodeId, ip, type, country, city, asn };
  index.add(exit);
}
const buildMs = performance.now() - buildStart;
const heapAfter = process.memoryUsage().heapUsed;

const cases: Array<{ name: string; targeting: Targeting }> = [
  { name: 'untargeted', targeting: {} },
  { name: 'country', targeting: { country: 'de' } },
  { name: 'country+city', targeting: { country: 'de', city: 'city_3' } },
  { name: 'type=mobile', targeting: { type: 'mobile' } },
  { name: 'country+type=mobile', targeting: { country: 'de', type: 'mobile' } },
  { name: 'asn (common)', targeting: { asn: 1_500 } },
  { name: 'asn (rare, 20 exits)', targeting: { asn: RARE_ASN } },
];

let sink = 0;
const results: Array<{
  name: string;
  targeting: Targeting;
  nsPerOp: number;
  batches: number[];
  opsPerBatch: number;
  found: boolean;
}> = [];
for (const { name, targeting } of cases) {
  const found = index.select(targeting) !== null;
  // Calibrate the batch size to about BATCH_MS (at least 1, at most 200,000 selections).
  let opsPerBatch = 1;
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < opsPerBatch; i++) sink += index.select(targeting)?.ip.length ?? 0;
    const ms = performance.now() - t0;
    if (ms >= BATCH_MS / 4 || opsPerBatch >= 200_000) {
      opsPerBatch = Math.max(1, Math.min(200_000, Math.round((opsPerBatch * BATCH_MS) / ms)));
      break;
    }
    opsPerBatch *= 4;
  }
  const batches: number[] = [];
  for (let b = 0; b < BATCHES; b++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < opsPerBatch; i++) sink += index.select(targeting)?.ip.length ?? 0;
    batches.push(Number(process.hrtime.bigint() - t0) / opsPerBatch);
  }
  const sorted = [...batches].sort((a, b) => a - b);
  results.push({
    name,
    targeting,
    nsPerOp: sorted[sorted.length >> 1] as number,
    batches,
    opsPerBatch,
    found,
  });
}

process.stdout.write(
  `${JSON.stringify({
    exits: index.size,
    countries: COUNTRIES.length,
    citiesPerCountry: CITIES_PER_COUNTRY,
    buildMs,
    heapBytesPerExit: (heapAfter - heapBefore) / EXITS,
    results,
    sink: sink > 0,
  })}\n`,
);
