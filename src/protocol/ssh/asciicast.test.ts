import { describe, expect, it } from 'vitest';
import { CastEncoder, castHeaderLine } from './asciicast.js';

describe('asciicast v2', () => {
  it('writes a header and timed events, keeping a UTF-8 character split across chunks whole', () => {
    const e = new CastEncoder(1_000_000);
    const euro = Buffer.from('€', 'utf8');
    const lines = [
      castHeaderLine({ width: 80, height: 24, timestamp: 1000, env: { TERM: 'xterm' } }),
      e.output(1_000_500, Buffer.concat([Buffer.from('a'), euro.subarray(0, 1)])),
      e.output(1_001_250, euro.subarray(1)),
      e.input(1_002_000, Buffer.from('ls\r')),
      e.resize(1_003_000, 120, 40),
      e.marker(1_004_000, 'interrupted'),
    ];
    expect(lines.join('')).toBe(
      '{"version":2,"width":80,"height":24,"timestamp":1000,"env":{"TERM":"xterm"}}\n' +
        '[0.5,"o","a"]\n' +
        '[1.25,"o","€"]\n' +
        '[2,"i","ls\\r"]\n' +
        '[3,"r","120x40"]\n' +
        '[4,"m","interrupted"]\n',
    );
  });
});
