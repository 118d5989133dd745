/**
 * The session secret on disk for the time a child runs, and no longer: a 0600 file in a fresh
 * 0700 directory under the OS temp dir, removed when jit exec ends (and, should jit be killed
 * between, by the process's exit hook; SIGKILL leaves it until the OS cleans its temp dir — the
 * secret is dead by then anyway, since the session ends without the CLI's heartbeat).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export class SecretFile {
  private dir: string | undefined;
  private readonly onExit = () => this.remove();

  /** Write the content; returns the file's path. */
  write(content: string): string {
    this.remove();
    const dir = mkdtempSync(path.join(os.tmpdir(), 'jit-exec-'));
    this.dir = dir;
    process.once('exit', this.onExit);
    const file = path.join(dir, 'pgpass');
    writeFileSync(file, content, { mode: 0o600, flag: 'wx' });
    return file;
  }

  remove(): void {
    if (!this.dir) return;
    rmSync(this.dir, { recursive: true, force: true });
    this.dir = undefined;
    process.removeListener('exit', this.onExit);
  }
}
