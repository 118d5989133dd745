import { describe, expect, it } from 'vitest';
import type { Detector, MaskRule } from '#shared/config/policy.js';
import {
  CANNOT_SCAN,
  MAX_CUSTOM_SCAN_CHARS,
  checkCustomPattern,
  compileDetectors,
  hashTag,
  ibanValid,
  luhnValid,
  maskText,
} from './detectors.js';

const KEY = Buffer.alloc(32, 7);

function rules(detectors: Detector[], style: MaskRule['style'] = 'full'): MaskRule[] {
  return [{ name: 'pii', targets: ['*'], users: [], groups: [], columns: [], detectors, style }];
}
function mask(text: string, detectors: Detector[], style: MaskRule['style'] = 'full'): string | typeof CANNOT_SCAN {
  return maskText(text, compileDetectors(rules(detectors, style))!, KEY);
}

describe('luhnValid', () => {
  it.each(['4111111111111111', '5500005555555559', '378282246310005', '6011111111111117', '4012888888881881'])(
    'accepts the test card %s',
    (n) => expect(luhnValid(n)).toBe(true),
  );
  it.each(['4111111111111112', '1234567812345678', '', '41111111111111a1'])('rejects %s', (n) => expect(luhnValid(n)).toBe(false));
});

describe('ibanValid', () => {
  it.each([
    'DE89370400440532013000',
    'GB82WEST12345698765432',
    'FR1420041010050500013M02606',
    'NL91ABNA0417164300',
    'de89 3704 0044 0532 0130 00',
  ])('accepts %s', (s) => expect(ibanValid(s)).toBe(true));
  it.each(['DE89370400440532013001', 'GB82WEST12345698765433', 'DE00370400440532013000', '1234567890123456', 'DE89'])(
    'rejects %s (checksum or shape)',
    (s) => expect(ibanValid(s)).toBe(false),
  );
});

describe('email detector', () => {
  it('masks an address inside free text in place', () => {
    expect(mask('write to alice.smith@example.co.uk today.', ['email'])).toBe('write to **** today.');
    expect(mask('write to alice.smith@example.co.uk today.', ['email'], 'partial')).toBe('write to a***@example.co.uk today.');
  });
  it('masks every address and keeps a sentence-ending dot', () => {
    expect(mask('a@x.io, b.c+tag@mail.example.org.', ['email'])).toBe('****, ****.');
  });
  it('masks internationalised addresses', () => {
    expect(mask('contact: jürgen@bücher.de', ['email'], 'partial')).toBe('contact: j***@bücher.de');
    expect(mask('x ü@例え.jp', ['email'])).toBe('x ****');
  });
  it('leaves text that only looks like an address', () => {
    for (const s of ['a@b', 'user@localhost', '@example.com', 'a@b.c', 'a@@b.com', 'version 1.2@3']) {
      expect(mask(s, ['email'])).toBe(s);
    }
  });
  it('hashes the same address the same way regardless of case, differently under another key', () => {
    const h1 = mask('Alice@Example.com', ['email'], 'hash');
    const h2 = mask('alice@example.com', ['email'], 'hash');
    expect(h1).toMatch(/^h:[0-9a-f]{12}$/);
    expect(h1).toBe(h2);
    expect(maskText('alice@example.com', compileDetectors(rules(['email'], 'hash'))!, Buffer.alloc(32, 8))).not.toBe(h2);
    expect(h2).toBe(hashTag(KEY, 'alice@example.com'));
  });
});

describe('credit-card detector', () => {
  it('masks Luhn-valid numbers with or without separators', () => {
    expect(mask('card 4111 1111 1111 1111 ok', ['credit-card'])).toBe('card **** ok');
    expect(mask('card 4111-1111-1111-1111', ['credit-card'], 'partial')).toBe('card **** **** **** 1111');
    expect(mask('4111111111111111', ['credit-card'], 'partial')).toBe('**** **** **** 1111');
    expect(mask('amex 378282246310005.', ['credit-card'], 'partial')).toBe('amex **** **** **** 0005.');
  });
  it('leaves Luhn-invalid numbers and longer digit runs', () => {
    for (const s of ['card 4111-1111-1111-1112', 'ref 4111111111111111999', 'short 411111111111']) {
      expect(mask(s, ['credit-card'])).toBe(s);
    }
  });
  it('finds the card after a leading group that is not part of it', () => {
    expect(mask('order 1234 4111 1111 1111 1111', ['credit-card'], 'partial')).toBe('order 1234 **** **** **** 1111');
  });
  it('hashes the digits only, so separators do not change the hash', () => {
    expect(mask('4111 1111 1111 1111', ['credit-card'], 'hash')).toBe(mask('4111-1111-1111-1111', ['credit-card'], 'hash'));
  });
});

describe('phone detector', () => {
  it.each(['+44 20 7946 0958', '+4915112345678', '(555) 123-4567', '555-123-4567', '555.123.4567', '020 7946 0958', '0201234567'])(
    'masks %s keeping the last two digits in partial style',
    (p) => {
      expect(mask(`call ${p} now`, ['phone'], 'partial')).toBe(`call ******${p.slice(-2)} now`);
    },
  );
  it.each(['on 2024-01-15', 'at 192.168.100.1', 'price 1234567.89', 'id 12345678', 'year 2024', 'v1.2.3'])('leaves %s', (s) => {
    expect(mask(s, ['phone'])).toBe(s);
  });
});

describe('iban detector', () => {
  it('masks a valid IBAN, grouped or compact, and stops before a following word', () => {
    expect(mask('IBAN DE89 3704 0044 0532 0130 00 thanks', ['iban'], 'partial')).toBe('IBAN DE** **** 3000 thanks');
    expect(mask('pay GB82WEST12345698765432', ['iban'])).toBe('pay ****');
  });
  it('leaves an IBAN-shaped string with a wrong checksum', () => {
    expect(mask('GB82WEST12345698765433', ['iban'])).toBe('GB82WEST12345698765433');
  });
});

describe('custom regex detector', () => {
  it('masks what the pattern matches', () => {
    expect(mask('employee EMP-123456 joined', [{ regex: 'EMP-[0-9]{6}' }])).toBe('employee **** joined');
  });
  it('does not loop on a pattern that matches the empty string', () => {
    expect(mask('abc', [{ regex: 'x*' }])).toBe('abc');
  });
  it('refuses (cannot scan) with a screened-out pattern, never passes the value through', () => {
    expect(mask('aaaa', [{ regex: '(a+)+$' }])).toBe(CANNOT_SCAN);
    expect(mask('aaaa', [{ regex: '([' }])).toBe(CANNOT_SCAN);
  });
  it('refuses values longer than the scan limit', () => {
    expect(mask('x'.repeat(MAX_CUSTOM_SCAN_CHARS + 1), [{ regex: 'y' }])).toBe(CANNOT_SCAN);
  });
  it.each([
    ['(a+)+', false],
    ['(a|aa)*', false],
    ['([a-z]+\\d)*', false],
    ['(?<n>x)\\k<n>', false],
    ['(x)\\1', false],
    ['', false],
    ['\\d{3}-\\d{2}-\\d{4}', true],
    ['(?:ab)+', true],
    ['(?:(\\d+)-x)?', true],
    ['EMP-[0-9]{6}', true],
    ['[(+*]+', true],
  ])('checkCustomPattern(%s) accepts: %s', (p, ok) => {
    expect(checkCustomPattern(p) === undefined).toBe(ok);
  });
});

describe('overlaps and cost', () => {
  it('masks a value found by two detectors once', () => {
    expect(mask('4111111111111111', ['phone', 'credit-card'], 'partial')).toBe('**** **** **** 1111');
  });
  it('stays linear on hostile text (long runs of address and digit characters)', () => {
    const det = compileDetectors(rules(['email', 'credit-card', 'phone', 'iban']))!;
    const inputs = ['a'.repeat(1 << 20), 'a@'.repeat(1 << 19), '1'.repeat(1 << 20), '1 '.repeat(1 << 19), 'DE89 '.repeat(1 << 18)];
    const t0 = performance.now();
    for (const s of inputs) maskText(s, det, KEY);
    // Quadratic behaviour on 1 MiB would take minutes; linear takes well under a second.
    expect(performance.now() - t0).toBeLessThan(5000);
  });
});
