/** "Waiting for approval" on a TTY (props in, no I/O inside). */
import { Box, Text } from 'ink';
import Spinner from 'ink-spinner';
import { formatDuration } from '#shared/duration.js';
import { clean } from '../output/style.js';

export interface RequestViewProps {
  requestId: string;
  target: string;
  /** `bob, group dba (2 needed)` */
  approvers: string;
  required: number;
  approvals: { approver: string; comment?: string | undefined }[];
  elapsedSeconds: number;
  secondsLeft: number;
  /** Set once approved: the spinner gives way to a check mark. */
  approved?: boolean;
  warning?: string | undefined;
  color: boolean;
}

/** Request id, target, who can approve, approvals so far, elapsed time; Ctrl-C cancels. */
export function RequestView(p: RequestViewProps) {
  const c = p.color;
  return (
    <Box flexDirection="column">
      <Text>
        {p.approved ? (
          <Text color={c ? 'green' : undefined}>✓</Text>
        ) : (
          <Text color={c ? 'yellow' : undefined}>
            <Spinner type="dots" />
          </Text>
        )}{' '}
        {p.approved ? 'Approved: ' : 'Waiting for approval: '}
        <Text bold={c}>{clean(p.target)}</Text> <Text dimColor={c}>(request {p.requestId})</Text>
      </Text>
      <Text>
        {'  '}approvers {clean(p.approvers)} · {p.approvals.length} of {p.required} approved
      </Text>
      {p.approvals.map((a) => (
        <Text key={a.approver}>
          {'  '}
          <Text color={c ? 'green' : undefined}>✓</Text> {clean(a.approver)}
          {a.comment ? `: “${clean(a.comment)}”` : ''}
        </Text>
      ))}
      {p.warning ? (
        <Text color={c ? 'yellow' : undefined}>
          {'  '}! {clean(p.warning)}
        </Text>
      ) : null}
      {p.approved ? null : (
        <Text dimColor={c}>
          {'  '}waiting {formatDuration(p.elapsedSeconds)} · expires in {formatDuration(p.secondsLeft)} · Ctrl-C cancels the request
        </Text>
      )}
    </Box>
  );
}
