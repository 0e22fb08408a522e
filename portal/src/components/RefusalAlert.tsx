import { Alert, type AlertProps } from '@mantine/core';
import { ApiError } from '../api/client.ts';

/**
 * Why the API refused (or could not be reached), in its own words, next to what was
 * asked; nothing for any other value, so `error={mutation.error}` is enough.
 */
export function RefusalAlert({
  error,
  ...props
}: { error: unknown } & Omit<AlertProps, 'color' | 'role' | 'children'>) {
  if (!(error instanceof ApiError)) return null;
  return (
    <Alert color="red" role="alert" {...props}>
      {error.message}
    </Alert>
  );
}
