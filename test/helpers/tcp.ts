/** TCP helpers for forwarding tests: an echo server and a probe through a local tunnel port. */
import net from 'node:net';

/** A TCP echo server on 127.0.0.1 and its port. */
export async function echoServer(): Promise<{ server: net.Server; port: number }> {
  const server = net.createServer((c) => c.pipe(c));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as net.AddressInfo).port };
}

/**
 * Send "ping" through a local tunnel port and return what came back: "ping" through an echo
 * server, "" when the tunnel closed the connection (the far side refused it). Waits while nothing
 * listens yet (ssh binds its -L ports after logging in); `why()` explains a port that never opens.
 */
export async function probeTunnel(port: number, why: () => string = () => '', tries = 100): Promise<string> {
  for (let i = 0; i < tries; i++) {
    const got = await new Promise<string | undefined>((resolve) => {
      const c = net.connect(port, '127.0.0.1');
      let data = '';
      let connected = false;
      c.on('error', () => resolve(connected ? data : undefined));
      c.on('connect', () => {
        connected = true;
        c.write('ping');
      });
      c.on('data', (d) => {
        data += d.toString();
        c.end();
      });
      c.on('close', () => resolve(connected ? data : undefined));
      setTimeout(() => c.destroy(), 3000);
    });
    if (got !== undefined) return got;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on ${port}: ${why()}`);
}
