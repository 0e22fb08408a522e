import {
  Alert,
  Badge,
  type CSSVariablesResolver,
  createTheme,
  Modal,
  NavLink,
  Notification,
} from '@mantine/core';

export const theme = createTheme({
  defaultRadius: 'md',
  primaryColor: 'indigo',
  // Shade 8 on white and white on shade 8 both pass WCAG AA contrast (shade 6 does not).
  primaryShade: 8,
  fontFamily:
    'Inter, system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif',
  headings: { fontWeight: '700' },
  components: {
    Modal: Modal.extend({ defaultProps: { closeButtonProps: { 'aria-label': 'Close' } } }),
    // Status badges in dark text beside a coloured dot: light badges' tinted text on a tint
    // of the same colour falls under WCAG AA contrast at badge size.
    Badge: Badge.extend({ defaultProps: { variant: 'dot' } }),
    NavLink: NavLink.extend({ defaultProps: { variant: 'filled' } }),
    Notification: Notification.extend({
      defaultProps: { closeButtonProps: { 'aria-label': 'Close' } },
      styles: { description: { color: 'var(--mantine-color-text)' } },
    }),
    // The same for alert titles: tinted text on a tint is too faint for yellow and orange.
    Alert: Alert.extend({ styles: { title: { color: 'var(--mantine-color-text)' } } }),
  },
});

/** Mantine's dimmed grey (gray.6) and error red (red.6) are under AA contrast on white. */
export const cssVariablesResolver: CSSVariablesResolver = () => ({
  variables: {},
  light: {
    '--mantine-color-dimmed': 'var(--mantine-color-gray-7)',
    '--mantine-color-error': 'var(--mantine-color-red-8)',
  },
  dark: {},
});
