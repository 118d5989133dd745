/**
 * Mount an ink view on stderr. ink and react are imported here, lazily, so commands that run
 * without a TTY never load them.
 */
import type { ReactElement } from 'react';
import type { Ctx } from '#shared/runtime/ctx.js';

export interface MountedView {
  update(element: ReactElement): void;
  /** Unmount and leave the last frame on screen. */
  done(): Promise<void>;
}

/** Render `element` to stderr (status goes to stderr; stdout stays for data). */
export async function mountView(ctx: Pick<Ctx, 'io'>, element: ReactElement): Promise<MountedView> {
  const { render } = await import('ink');
  const instance = render(element, {
    stdout: ctx.io.stderr as NodeJS.WriteStream,
    stderr: ctx.io.stderr as NodeJS.WriteStream,
    stdin: ctx.io.stdin as NodeJS.ReadStream,
    exitOnCtrlC: false,
    patchConsole: false,
    // No keyboard input is read: the terminal query would attach to stdin and keep the process alive.
    kittyKeyboard: { mode: 'disabled' },
  });
  return {
    update: (el) => instance.rerender(el),
    async done() {
      instance.unmount();
      await instance.waitUntilExit().catch(() => {});
    },
  };
}

/** Load the views module (and with it ink/react) only when needed. */
export function loadViews() {
  return Promise.all([import('react'), import('./login-view.js'), import('./connect-view.js')]).then(([react, login, connect]) => ({
    createElement: react.createElement,
    LoginView: login.LoginView,
    ConnectView: connect.ConnectView,
  }));
}
