import {
  Button,
  Checkbox,
  Group,
  NumberInput,
  SimpleGrid,
  Stack,
  TagsInput,
  TextInput,
} from '@mantine/core';
import { type FormEvent, useState } from 'react';
import { type KeySettings, keySettingsProblems } from './key-settings.ts';
import { RefusalAlert } from './RefusalAlert.tsx';

export interface KeyFormProps {
  initial: KeySettings;
  submitLabel: string;
  pending: boolean;
  error: unknown;
  onSubmit(settings: KeySettings): void;
}

/** A key's name, scopes and limits; the same form creates and edits. */
export function KeyForm({ initial, submitLabel, pending, error, onSubmit }: KeyFormProps) {
  const [values, setValues] = useState(initial);
  const [touched, setTouched] = useState(false);
  const problems = keySettingsProblems(values);
  const set = <K extends keyof KeySettings>(name: K, value: KeySettings[K]) =>
    setValues((current) => ({ ...current, [name]: value }));
  const submit = (event: FormEvent) => {
    event.preventDefault();
    setTouched(true);
    if (Object.keys(problems).length === 0) onSubmit(values);
  };
  const shown = (name: keyof KeySettings) => (touched ? problems[name] : undefined);
  return (
    <form onSubmit={submit} noValidate>
      <Stack>
        <RefusalAlert error={error} title="Not saved" />
        <TextInput
          label="Name"
          placeholder="scraper-prod"
          value={values.name}
          error={shown('name')}
          onChange={(event) => set('name', event.currentTarget.value)}
          data-autofocus
        />
        <Checkbox
          label="Also an API key (Authorization: Bearer); leave off for proxy-only use"
          checked={values.api}
          onChange={(event) => set('api', event.currentTarget.checked)}
        />
        <SimpleGrid cols={{ base: 1, xs: 2 }}>
          <NumberInput
            label="Monthly cap (GB)"
            description="Empty for no cap"
            min={0}
            decimalScale={3}
            value={values.monthlyGb}
            error={shown('monthlyGb')}
            onChange={(value) => set('monthlyGb', value === '' ? '' : Number(value))}
          />
          <NumberInput
            label="Concurrent connections"
            description="Empty for no limit"
            min={1}
            max={100000}
            allowDecimal={false}
            value={values.maxConcurrency}
            error={shown('maxConcurrency')}
            onChange={(value) => set('maxConcurrency', value === '' ? '' : Number(value))}
          />
        </SimpleGrid>
        <TagsInput
          label="Allowed countries"
          description="Two-letter codes (us, de); empty for any. Press Enter after each."
          value={values.countries}
          error={shown('countries')}
          onChange={(value) =>
            set(
              'countries',
              value.map((country) => country.toLowerCase()),
            )
          }
        />
        <TagsInput
          label="IP allow-list"
          description="CIDRs the key may be used from; empty for anywhere"
          placeholder="203.0.113.0/24"
          value={values.allowlist}
          onChange={(value) => set('allowlist', value)}
        />
        <TagsInput
          label="Password-less ranges"
          description="Client CIDRs that may connect without credentials (browsers, Playwright)"
          value={values.passwordless}
          onChange={(value) => set('passwordless', value)}
        />
        <TextInput
          label="Default targeting for password-less connections"
          placeholder="country-us-type-residential"
          value={values.defaultTargeting}
          onChange={(event) => set('defaultTargeting', event.currentTarget.value)}
        />
        <Group justify="flex-end">
          <Button type="submit" loading={pending}>
            {submitLabel}
          </Button>
        </Group>
      </Stack>
    </form>
  );
}
