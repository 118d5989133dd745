/** The live status of `jit connect` on a TTY (props in, no I/O inside). */
import { Box, Text } from 'ink';
import { formatDuration } from '#shared/duration.js';
import { formatBytes } from '../output/format.js';
import { clean } from '../output/style.js';

export interface ConnectViewProps {
  target: string;
  sessionId: string;
  address: string;
  active: number;
  total: number;
  bytesIn: number;
  bytesOut: number;
  secondsLeft: number;
  /** Last warning (e.g. a failed heartbeat), if any. */
  warning?: string | undefined;
  /** Statements of this session held until approvers decide (one line each). */
  waiting?: string[] | undefined;
  color: boolean;
}

/** Target, address, connections, bytes, time left and held statements; Ctrl-C ends the session. */
export function ConnectView(p: ConnectViewProps) {
  const c = p.color;
  return (
    <Box flexDirection="column">
      <Text>
        <Text color={c ? 'green' : undefined}>●</Text> <Text bold={c}>{clean(p.target)}</Text> on {p.address}{' '}
        <Text dimColor={c}>(session {p.sessionId})</Text>
      </Text>
      <Text>
        {'  '}connections {p.active} open, {p.total} total · in {formatBytes(p.bytesIn)} · out {formatBytes(p.bytesOut)} ·{' '}
        {formatDuration(p.secondsLeft)} left
      </Text>
      {(p.waiting ?? []).map((w) => (
        <Text key={w} color={c ? 'yellow' : undefined}>
          {'  '}⏳ {clean(w)}
        </Text>
      ))}
      {p.warning ? (
        <Text color={c ? 'yellow' : undefined}>
          {'  '}! {clean(p.warning)}
        </Text>
      ) : null}
      <Text dimColor={c}>{'  '}Ctrl-C ends the session and removes its credential</Text>
    </Box>
  );
}
