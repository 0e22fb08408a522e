import {
  Alert,
  Button,
  Card,
  Group,
  SimpleGrid,
  Switch,
  Text,
  TextInput,
  Title,
} from '@mantine/core';
import { notifications } from '@mantine/notifications';
import { useMutation, useQueryClient } from '@tanstack/react-query';
import { type FormEvent, useState } from 'react';
import { api, type Schemas, unwrap } from '../api/client.ts';
import { RefusalAlert } from './RefusalAlert.tsx';

/** Charge the saved card when the balance runs low; warn (balance.low) below a level. */
export function AutoTopUpForm({ settings }: { settings: Schemas['AutoTopUp'] }) {
  const queryClient = useQueryClient();
  const [enabled, setEnabled] = useState(settings.enabled);
  const [threshold, setThreshold] = useState(settings.threshold.amount);
  const [amount, setAmount] = useState(settings.amount.amount);
  const [low, setLow] = useState(settings.low_balance_threshold.amount);
  const save = useMutation({
    mutationFn: (body: Schemas['AutoTopUpSettings']) =>
      unwrap(api.PUT('/v1/billing/auto-topup', { body })),
    onSuccess: () => {
      notifications.show({ color: 'teal', message: 'Auto top-up saved' });
      void queryClient.invalidateQueries({ queryKey: ['billing'] });
    },
  });
  const submit = (event: FormEvent) => {
    event.preventDefault();
    save.mutate({ enabled, threshold, amount, low_balance_threshold: low });
  };
  const card = settings.payment_method;
  return (
    <Card withBorder>
      <form onSubmit={submit}>
        <Title order={3} size="h4" mb="xs">
          Auto top-up
        </Title>
        <Text size="sm" c="dimmed" mb="sm">
          {card
            ? `Charges your ${card.brand} ending ${card.last4} when the balance falls below the threshold.`
            : 'Pay once by card to save a card for auto top-up.'}
        </Text>
        {settings.last_failure && (
          <Alert color="red" mb="sm" title="The last charge failed">
            {settings.last_failure.message}
          </Alert>
        )}
        <RefusalAlert error={save.error} mb="sm" />
        <Switch
          label="Top up automatically"
          checked={enabled}
          onChange={(event) => setEnabled(event.currentTarget.checked)}
          mb="sm"
        />
        <SimpleGrid cols={{ base: 1, sm: 3 }}>
          <TextInput
            label="When balance is below"
            value={threshold}
            inputMode="decimal"
            onChange={(event) => setThreshold(event.currentTarget.value)}
          />
          <TextInput
            label="Add"
            value={amount}
            inputMode="decimal"
            onChange={(event) => setAmount(event.currentTarget.value)}
          />
          <TextInput
            label="Warn me below"
            value={low}
            inputMode="decimal"
            onChange={(event) => setLow(event.currentTarget.value)}
          />
        </SimpleGrid>
        <Group justify="flex-end" mt="sm">
          <Button type="submit" loading={save.isPending}>
            Save
          </Button>
        </Group>
      </form>
    </Card>
  );
}
