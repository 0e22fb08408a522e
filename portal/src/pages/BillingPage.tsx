import {
  Alert,
  Anchor,
  Badge,
  Button,
  Card,
  Group,
  SimpleGrid,
  Stack,
  Table,
  Text,
  TextInput,
  Title,
} from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useInfiniteQuery, useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useEffect, useState } from 'react';
import { useSearchParams } from 'react-router';
import { api, type Schemas, unwrap } from '../api/client.ts';
import { AutoTopUpForm } from '../components/AutoTopUpForm.tsx';
import { PageHeader } from '../components/PageHeader.tsx';
import { RefusalAlert } from '../components/RefusalAlert.tsx';
import { Webhooks } from '../components/Webhooks.tsx';
import { formatDate, formatMoney } from '../format.ts';
import { ME } from '../session.tsx';

export const BILLING = ['billing'] as const;

const PACKS = [
  { pack: 'starter', label: 'Starter', amount: '10' },
  { pack: 'growth', label: 'Growth', amount: '50' },
  { pack: 'scale', label: 'Scale', amount: '200' },
] as const;

const KIND_LABELS: Record<Schemas['LedgerLine']['kind'], string> = {
  opening: 'Opening balance',
  trial: 'Trial credit',
  topup: 'Top-up',
  usage: 'Usage',
  refund: 'Refund',
  dispute: 'Dispute',
  adjustment: 'Adjustment',
  earning: 'Node earnings',
  payout: 'Payout',
  payout_reversal: 'Payout reversed',
};

function BuyCredit({ enabled, currency }: { enabled: boolean; currency: string }) {
  const [amount, setAmount] = useState('');
  const checkout = useMutation({
    mutationFn: (body: Schemas['CreateCheckoutRequest']) =>
      unwrap(api.POST('/v1/billing/checkout', { body })),
    // Stripe's hosted page takes the card; it sends the person back here afterwards.
    onSuccess: (session) => globalThis.location.assign(session.url),
  });
  const custom = (event: FormEvent) => {
    event.preventDefault();
    checkout.mutate({ amount: amount.trim() });
  };
  return (
    <Card withBorder>
      <Title order={3} size="h4" mb="sm">
        Buy credit
      </Title>
      {!enabled && (
        <Alert color="gray" mb="sm">
          Card payments are not set up on this server. Ask the operator to credit your account.
        </Alert>
      )}
      <RefusalAlert error={checkout.error} mb="sm" />
      <SimpleGrid cols={{ base: 1, xs: 3 }} mb="md">
        {PACKS.map((pack) => (
          <Button
            key={pack.pack}
            variant="light"
            disabled={!enabled}
            loading={
              checkout.isPending &&
              checkout.variables &&
              'pack' in checkout.variables &&
              checkout.variables.pack === pack.pack
            }
            onClick={() => checkout.mutate({ pack: pack.pack })}
          >
            {pack.label} · {formatMoney({ currency, amount: pack.amount })}
          </Button>
        ))}
      </SimpleGrid>
      <form onSubmit={custom}>
        <Group align="flex-end" gap="sm">
          <TextInput
            label={`Other amount (${currency.toUpperCase()})`}
            description="5.00 to 10000.00"
            placeholder="25.00"
            inputMode="decimal"
            value={amount}
            onChange={(event) => setAmount(event.currentTarget.value)}
            disabled={!enabled}
          />
          <Button type="submit" disabled={!enabled || !amount.trim()}>
            Pay with card
          </Button>
        </Group>
      </form>
    </Card>
  );
}

function Ledger() {
  const ledger = useInfiniteQuery({
    queryKey: [...BILLING, 'ledger'],
    initialPageParam: '',
    queryFn: ({ pageParam }) =>
      unwrap(
        api.GET('/v1/billing/ledger', {
          params: { query: { limit: 50, ...(pageParam ? { cursor: pageParam } : {}) } },
        }),
      ),
    getNextPageParam: (page) => page.next_cursor ?? undefined,
  });
  const lines = ledger.data?.pages.flatMap((page) => page.items) ?? [];
  return (
    <Card withBorder padding={0}>
      <Title order={3} size="h4" p="md">
        Statement
      </Title>
      <div className="table-scroll">
        <Table miw={640} verticalSpacing="xs" horizontalSpacing="md" data-testid="ledger">
          <Table.Thead>
            <Table.Tr>
              <Table.Th>Date</Table.Th>
              <Table.Th>Kind</Table.Th>
              <Table.Th>Description</Table.Th>
              <Table.Th ta="right">Amount</Table.Th>
              <Table.Th>Receipt</Table.Th>
            </Table.Tr>
          </Table.Thead>
          <Table.Tbody>
            {lines.map((line) => (
              <Table.Tr key={`${line.id}-${line.book}`}>
                <Table.Td>
                  <Text size="sm">{formatDate(line.created_at)}</Text>
                </Table.Td>
                <Table.Td>
                  <Badge color={line.amount.amount_micro >= 0 ? 'teal' : 'gray'}>
                    {KIND_LABELS[line.kind]}
                  </Badge>
                </Table.Td>
                <Table.Td>
                  <Text size="sm">
                    {line.memo || (line.kind === 'usage' ? 'Proxy traffic' : '')}
                  </Text>
                </Table.Td>
                <Table.Td ta="right">
                  <Text
                    size="sm"
                    ff="monospace"
                    c={line.amount.amount_micro < 0 ? 'red.8' : 'teal.9'}
                  >
                    {formatMoney(line.amount)}
                  </Text>
                </Table.Td>
                <Table.Td>
                  {line.receipt_url ? (
                    <Anchor href={line.receipt_url} target="_blank" rel="noreferrer" size="sm">
                      Receipt
                    </Anchor>
                  ) : null}
                </Table.Td>
              </Table.Tr>
            ))}
          </Table.Tbody>
        </Table>
      </div>
      {ledger.hasNextPage && (
        <Group p="md">
          <Button
            variant="default"
            onClick={() => ledger.fetchNextPage()}
            loading={ledger.isFetchingNextPage}
          >
            Older lines
          </Button>
        </Group>
      )}
    </Card>
  );
}

export default function BillingPage() {
  const queryClient = useQueryClient();
  const billing = useQuery({ queryKey: BILLING, queryFn: () => unwrap(api.GET('/v1/billing')) });
  const [search, setSearch] = useSearchParams();
  const returned = search.get('checkout');
  useEffect(() => {
    if (!returned) return;
    if (returned === 'succeeded') {
      notifications.show({
        color: 'teal',
        title: 'Payment received',
        message: 'Your balance goes up as soon as Stripe confirms the payment.',
      });
    } else {
      notifications.show({
        color: 'gray',
        title: 'Payment cancelled',
        message: 'Nothing was charged.',
      });
    }
    void queryClient.invalidateQueries({ queryKey: BILLING });
    void queryClient.invalidateQueries({ queryKey: ME });
    setSearch({}, { replace: true });
  }, [returned, queryClient, setSearch]);

  const data = billing.data;
  return (
    <>
      <PageHeader
        title="Billing"
        description="Your balance pays for traffic at each exit type's price per GB."
      />
      {data && (
        <Stack gap="lg">
          <SimpleGrid cols={{ base: 1, sm: 2 }}>
            <Card withBorder>
              <Text size="xs" c="dimmed" tt="uppercase" fw={600}>
                Balance
              </Text>
              <Text size="2rem" fw={700} data-testid="balance">
                {formatMoney(data.balance)}
              </Text>
              <Table mt="sm" withRowBorders={false} verticalSpacing={2}>
                <Table.Tbody>
                  {data.buys.map((buy) => (
                    <Table.Tr key={buy.exit_type}>
                      <Table.Td tt="capitalize">{buy.exit_type}</Table.Td>
                      <Table.Td ta="right" fw={500}>
                        {buy.gb} GB
                      </Table.Td>
                    </Table.Tr>
                  ))}
                </Table.Tbody>
              </Table>
            </Card>
            <Card withBorder>
              <Text size="xs" c="dimmed" tt="uppercase" fw={600} mb="xs">
                Prices per GB
              </Text>
              <Table withRowBorders={false} verticalSpacing={2}>
                <Table.Tbody>
                  {data.prices.map((price) => (
                    <Table.Tr key={`${price.exit_type}-${price.country ?? 'any'}`}>
                      <Table.Td tt="capitalize">
                        {price.exit_type}
                        {price.country ? ` (${price.country.toUpperCase()})` : ''}
                      </Table.Td>
                      <Table.Td ta="right" fw={500}>
                        {formatMoney(price.per_gb)}
                      </Table.Td>
                    </Table.Tr>
                  ))}
                </Table.Tbody>
              </Table>
            </Card>
          </SimpleGrid>
          <BuyCredit enabled={data.card_payments} currency={data.balance.currency} />
          {data.auto_topup && <AutoTopUpForm settings={data.auto_topup} />}
          <Ledger />
          <Webhooks />
        </Stack>
      )}
    </>
  );
}
