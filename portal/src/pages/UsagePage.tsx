import {
  Anchor,
  Card,
  Group,
  Loader,
  SegmentedControl,
  Select,
  SimpleGrid,
  Stack,
  Text,
} from '@mantine/core';
import { useQueries, useQuery } from '@tanstack/react-query';
import { lazy, Suspense, useEffect, useMemo, useState } from 'react';
import { api, type Paths, type Schemas, unwrap } from '../api/client.ts';
import { PageHeader } from '../components/PageHeader.tsx';
import { periods, seriesByCountry, seriesByKey } from '../components/usage-series.ts';
import { formatBytes } from '../format.ts';
import { useKeys } from './KeysPage.tsx';
import { useRegions } from './ProxyBuilderPage.tsx';

const BytesChart = lazy(() => import('../components/BytesChart.tsx'));

const RANGES = {
  '24h': { hours: 24, granularity: 'hour' },
  '7d': { hours: 24 * 7, granularity: 'hour' },
  '30d': { hours: 24 * 30, granularity: 'day' },
} as const;
type Range = keyof typeof RANGES;

type UsageQuery = NonNullable<Paths['/v1/usage']['get']['parameters']['query']>;

/** Every page of a usage report for the range. */
async function fetchUsage(query: UsageQuery) {
  const rows: Schemas['UsageRow'][] = [];
  let cursor: string | undefined;
  let report: Schemas['UsageReport'];
  do {
    report = await unwrap(
      api.GET('/v1/usage', {
        params: { query: { ...query, limit: 5000, ...(cursor ? { cursor } : {}) } },
      }),
    );
    rows.push(...report.items);
    cursor = report.next_cursor ?? undefined;
  } while (cursor);
  return { ...report, items: rows };
}

function rangeOf(range: Range) {
  const { hours, granularity } = RANGES[range];
  const hour = 3_600_000;
  // The current hour is included: usage reaches the API within seconds.
  const to = new Date(Math.ceil((Date.now() + 1) / hour) * hour);
  const from = new Date(to.getTime() - hours * hour);
  return { from: from.toISOString(), to: to.toISOString(), granularity } as const;
}

function Stat({ label, value }: { label: string; value: string }) {
  return (
    <Card withBorder>
      <Text size="xs" c="dimmed" tt="uppercase" fw={600}>
        {label}
      </Text>
      <Text size="xl" fw={700} data-testid={`stat-${label}`}>
        {value}
      </Text>
    </Card>
  );
}

export default function UsagePage() {
  const [range, setRange] = useState<Range>('24h');
  const [breakdown, setBreakdown] = useState<'key' | 'country'>('key');
  const [keyId, setKeyId] = useState('');
  // The range moves on with the clock (a new hour brings a new period).
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const timer = setInterval(() => setTick((value) => value + 1), 60_000);
    return () => clearInterval(timer);
  }, []);
  // biome-ignore lint/correctness/useExhaustiveDependencies: tick re-reads the clock
  const span = useMemo(() => rangeOf(range), [range, tick]);
  const keys = useKeys();
  const regions = useRegions();
  const query = { ...span, ...(keyId ? { key_id: keyId } : {}) };
  const usage = useQuery({
    queryKey: ['usage', query],
    queryFn: () => fetchUsage(query),
    // Usage reaches the API within seconds of the traffic; open connections change faster.
    refetchInterval: 5_000,
  });
  const countries = [
    ...new Set((regions.data?.items ?? []).map((region) => region.country)),
  ].sort();
  const byCountry = useQueries({
    queries: (breakdown === 'country' ? countries : []).map((country) => ({
      queryKey: ['usage', { ...query, country }],
      queryFn: () => fetchUsage({ ...query, country }),
    })),
  });
  const times = useMemo(() => periods(span.from, span.to, span.granularity), [span]);
  const chart = useMemo(() => {
    if (breakdown === 'key') return seriesByKey(usage.data?.items ?? [], times);
    return seriesByCountry(
      byCountry.flatMap((result, index) =>
        result.data ? [{ country: countries[index] ?? '', rows: result.data.items }] : [],
      ),
      times,
    );
  }, [breakdown, usage.data, byCountry, times, countries]);
  const totals = usage.data?.totals;
  const openNow = usage.data?.open_connections;
  const csv = `/v1/usage/export.csv?${new URLSearchParams(query).toString()}`;

  return (
    <>
      <PageHeader
        title="Usage"
        description="Bytes both ways between you and the gateway, headers included, per key and exit country."
        action={
          <Anchor href={csv} download="ipcola-usage.csv">
            Export CSV
          </Anchor>
        }
      />
      <Stack>
        <Group gap="sm" wrap="wrap">
          <SegmentedControl
            aria-label="Range"
            data={[
              { value: '24h', label: '24 hours' },
              { value: '7d', label: '7 days' },
              { value: '30d', label: '30 days' },
            ]}
            value={range}
            onChange={(value) => setRange(value as Range)}
          />
          <SegmentedControl
            aria-label="Break down by"
            data={[
              { value: 'key', label: 'By key' },
              { value: 'country', label: 'By country' },
            ]}
            value={breakdown}
            onChange={(value) => setBreakdown(value as 'key' | 'country')}
          />
          <Select
            aria-label="Key"
            data={[
              { value: '', label: 'All keys' },
              ...(keys.data?.items ?? []).map((key) => ({
                value: key.id,
                label: key.name || key.id,
              })),
            ]}
            value={keyId}
            onChange={(value) => setKeyId(value ?? '')}
            w={200}
          />
        </Group>
        <SimpleGrid cols={{ base: 1, xs: 2, md: 4 }}>
          <Stat
            label="Total"
            value={totals ? formatBytes(totals.bytes_up + totals.bytes_down) : '–'}
          />
          <Stat label="Downloaded" value={totals ? formatBytes(totals.bytes_down) : '–'} />
          <Stat label="Requests" value={totals ? totals.requests.toLocaleString('en-US') : '–'} />
          <Stat
            label="Connections open now"
            value={openNow ? openNow.total.toLocaleString('en-US') : '–'}
          />
        </SimpleGrid>
        <Card withBorder>
          <Text fw={600} mb="sm">
            Bytes per {span.granularity} {breakdown === 'key' ? 'by key' : 'by exit country'}
          </Text>
          <Suspense fallback={<Loader aria-label="Loading chart" />}>
            {chart.series.length > 0 ? (
              <BytesChart
                label={`Bytes per ${span.granularity}`}
                times={chart.times}
                series={chart.series}
              />
            ) : (
              <Text c="dimmed" size="sm" py="xl" ta="center" data-testid="no-usage">
                No traffic in this range yet.
              </Text>
            )}
          </Suspense>
        </Card>
      </Stack>
    </>
  );
}
