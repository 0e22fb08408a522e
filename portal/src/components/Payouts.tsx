import {
  Badge,
  Button,
  Card,
  Group,
  SimpleGrid,
  Table,
  Text,
  TextInput,
  Title,
} from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { ApiError, api, type Schemas, unwrap } from '../api/client.ts';
import { formatDate, formatMoney } from '../format.ts';
import { RefusalAlert } from './RefusalAlert.tsx';

const PAYOUTS = ['payouts'] as const;

/** Earnings paid out through Stripe Connect: the linked account, what is payable, payouts. */
export function Payouts() {
  const queryClient = useQueryClient();
  const account = useQuery({
    queryKey: [...PAYOUTS, 'account'],
    queryFn: () => unwrap(api.GET('/v1/payouts/account')),
    retry: false,
  });
  const payouts = useQuery({
    queryKey: PAYOUTS,
    queryFn: () => unwrap(api.GET('/v1/payouts')),
    retry: false,
  });
  const [amount, setAmount] = useState('');
  const link = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/payouts/account')),
    onSuccess: (onboarding) => globalThis.location.assign(onboarding.url),
  });
  const request = useMutation({
    mutationFn: (body: Schemas['CreatePayoutRequest']) => unwrap(api.POST('/v1/payouts', { body })),
    onSuccess: () => {
      notifications.show({ color: 'teal', message: 'Payout requested' });
      setAmount('');
      void queryClient.invalidateQueries({ queryKey: PAYOUTS });
    },
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    request.mutate(amount.trim() ? { amount: amount.trim() } : {});
  };
  if (account.error instanceof ApiError && account.error.code === 'billing_disabled') {
    return (
      <Card withBorder>
        <Title order={3} size="h4" mb="xs">
          Payouts
        </Title>
        <Text size="sm" c="dimmed">
          Payouts through Stripe are not set up on this server.
        </Text>
      </Card>
    );
  }
  const data = account.data;
  return (
    <Card withBorder>
      <Group justify="space-between" mb="sm">
        <Title order={3} size="h4">
          Payouts
        </Title>
        {data && (
          <Badge color={data.payouts_enabled ? 'teal' : 'yellow'}>
            {data.payouts_enabled
              ? 'Stripe account ready'
              : data.stripe_account_id
                ? 'Onboarding unfinished'
                : 'No payout account'}
          </Badge>
        )}
      </Group>
      {data && (
        <>
          <SimpleGrid cols={{ base: 1, xs: 3 }} mb="md">
            <div>
              <Text size="xs" c="dimmed" tt="uppercase" fw={600}>
                Owed
              </Text>
              <Text fw={700}>{formatMoney(data.owed)}</Text>
            </div>
            <div>
              <Text size="xs" c="dimmed" tt="uppercase" fw={600}>
                Held ({data.hold_days} days)
              </Text>
              <Text fw={700}>{formatMoney(data.held)}</Text>
            </div>
            <div>
              <Text size="xs" c="dimmed" tt="uppercase" fw={600}>
                Available
              </Text>
              <Text fw={700}>{formatMoney(data.available)}</Text>
            </div>
          </SimpleGrid>
          <RefusalAlert error={link.error ?? request.error} mb="sm" />
          <Group align="flex-end">
            <Button variant="light" onClick={() => link.mutate()} loading={link.isPending}>
              {data.stripe_account_id ? 'Continue Stripe onboarding' : 'Link a Stripe account'}
            </Button>
            <form onSubmit={submit}>
              <Group align="flex-end" gap="xs">
                <TextInput
                  label="Amount"
                  description={`Minimum ${formatMoney(data.minimum)}; empty for all available`}
                  value={amount}
                  inputMode="decimal"
                  onChange={(event) => setAmount(event.currentTarget.value)}
                />
                <Button type="submit" disabled={!data.payouts_enabled} loading={request.isPending}>
                  Request payout
                </Button>
              </Group>
            </form>
          </Group>
        </>
      )}
      {(payouts.data?.items.length ?? 0) > 0 && (
        <div className="table-scroll">
          <Table mt="md">
            <Table.Thead>
              <Table.Tr>
                <Table.Th>Date</Table.Th>
                <Table.Th>Amount</Table.Th>
                <Table.Th>Status</Table.Th>
              </Table.Tr>
            </Table.Thead>
            <Table.Tbody>
              {payouts.data?.items.map((payout) => (
                <Table.Tr key={payout.id}>
                  <Table.Td>{formatDate(payout.created_at)}</Table.Td>
                  <Table.Td>{formatMoney(payout.amount)}</Table.Td>
                  <Table.Td>
                    <Badge>{payout.status}</Badge>
                    {payout.failure && (
                      <Text size="xs" c="red">
                        {payout.failure}
                      </Text>
                    )}
                  </Table.Td>
                </Table.Tr>
              ))}
            </Table.Tbody>
          </Table>
        </div>
      )}
    </Card>
  );
}
