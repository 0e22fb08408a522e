/**
 * Renders a piece of the portal the way main.tsx mounts it (Mantine with the portal's
 * theme, notifications, TanStack Query, the router), with user-event for typing and keys.
 */
import { MantineProvider } from '@mantine/core';
import { Notifications } from '@mantine/notifications';
import { QueryClient, QueryClientProvider } from '@tanstack/react-query';
import { cleanup, render } from '@testing-library/react';
import { userEvent } from '@testing-library/user-event';
import type { ReactNode } from 'react';
import { MemoryRouter } from 'react-router';
import { cssVariablesResolver, theme } from '../../src/theme.ts';

export function renderPortal(ui: ReactNode, { path = '/' }: { path?: string } = {}) {
  const queryClient = new QueryClient({
    // As main.tsx: the SDK's transport already retried what asking again may cure.
    defaultOptions: { queries: { retry: false } },
  });
  // env "test": no transitions and no portals, so a modal is in the page as soon as it opens.
  const view = render(
    <MantineProvider theme={theme} cssVariablesResolver={cssVariablesResolver} env="test">
      <Notifications />
      <QueryClientProvider client={queryClient}>
        <MemoryRouter initialEntries={[path]}>{ui}</MemoryRouter>
      </QueryClientProvider>
    </MantineProvider>,
  );
  return {
    ...view,
    user: userEvent.setup(),
    queryClient,
    /** Unmounts and stops every query's timers (the regions poll), so the process can end. */
    close() {
      cleanup();
      queryClient.clear();
    },
  };
}
