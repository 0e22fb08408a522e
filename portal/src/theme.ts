import { createTheme } from '@mantine/core';

// The default theme's colours: its CSS variables then all come from Mantine's stylesheet,
// so no <style> element is injected and the CSP needs no inline styles elements.
export const theme = createTheme({
  defaultRadius: 'md',
});
