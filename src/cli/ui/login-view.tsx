/** The device-code screen of `jit login` (props in, no I/O inside). */
import { Box, Text } from 'ink';
import Spinner from 'ink-spinner';
import { formatDuration } from '#shared/duration.js';
import { clean } from '../output/style.js';

export interface LoginViewProps {
  server: string;
  /** The URL to open; the complete one (with the code) when the IdP gives it. */
  url: string;
  userCode: string;
  secondsLeft: number;
  /** The browser step is done: the spinner gives way to a check mark. */
  finished?: boolean;
  color: boolean;
}

/** URL, user code and a spinner while the user finishes in the browser. */
export function LoginView(props: LoginViewProps) {
  const c = props.color;
  return (
    <Box flexDirection="column">
      <Text>
        Logging in to <Text bold={c}>{clean(props.server)}</Text>
      </Text>
      <Text>
        {'  '}Open{' '}
        <Text color={c ? 'cyan' : undefined} underline={c}>
          {clean(props.url)}
        </Text>
      </Text>
      <Text>
        {'  '}and check that it shows the code <Text bold={c}>{clean(props.userCode)}</Text>
      </Text>
      {props.finished ? (
        <Text>
          <Text color={c ? 'green' : undefined}>✓</Text> Finished in the browser
        </Text>
      ) : (
        <Text>
          <Text color={c ? 'green' : undefined}>
            <Spinner type="dots" />
          </Text>{' '}
          Waiting for you to finish in the browser (code expires in {formatDuration(props.secondsLeft)})
        </Text>
      )}
    </Box>
  );
}
