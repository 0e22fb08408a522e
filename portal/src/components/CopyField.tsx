import { Button, Code, CopyButton, Group, Text } from '@mantine/core';

/** A value in monospace with a copy button, labelled for screen readers. */
export function CopyField({
  label,
  value,
  block,
}: {
  label: string;
  value: string;
  block?: boolean;
}) {
  return (
    <div>
      <Text size="sm" fw={500} mb={4}>
        {label}
      </Text>
      <Group gap="xs" wrap="nowrap" align="flex-start">
        <Code
          block={block}
          className="mono"
          style={{ flex: 1 }}
          data-testid={`copy-${label}`}
          // A scrolling block must be reachable by keyboard.
          tabIndex={block ? 0 : undefined}
        >
          {value}
        </Code>
        <CopyButton value={value}>
          {({ copied, copy }) => (
            <Button
              // Copied: filled in the primary colour, whose shade passes WCAG AA with white
              // (theme.ts), hovered too; white on teal's shade 8 is 3.9:1.
              variant={copied ? 'filled' : 'light'}
              onClick={copy}
              aria-label={`${copied ? 'Copied' : 'Copy'} ${label}`}
              size="xs"
              miw={72}
            >
              {copied ? 'Copied' : 'Copy'}
            </Button>
          )}
        </CopyButton>
      </Group>
    </div>
  );
}
