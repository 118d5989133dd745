import { describe, expect, it } from 'vitest';
import { makeScramVerifier, ScramClient, ScramError, ScramServer, scramVerifierString } from './scram.js';

// RFC 7677 §3 test vector (user "user", password "pencil").
const V = {
  password: 'pencil',
  clientNonce: 'rOprNGfwEbeRWgbNEkqO',
  serverNonce: '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0',
  salt: 'W22ZaJ0SNY7soEsUEjb6gQ==',
  clientFirst: 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO',
  serverFirst: 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096',
  clientFinal: 'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=',
  serverFinal: 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=',
};

const vectorVerifier = () => makeScramVerifier(V.password, { salt: Buffer.from(V.salt, 'base64') });

describe('SCRAM-SHA-256', () => {
  it('client produces the RFC 7677 messages', () => {
    const c = new ScramClient(V.password, { nonce: V.clientNonce, user: 'user' });
    expect(c.clientFirst()).toBe(V.clientFirst);
    expect(c.clientFinal(V.serverFirst)).toBe(V.clientFinal);
    expect(() => c.verifyServerFinal(V.serverFinal)).not.toThrow();
  });

  it('server verifies the RFC 7677 client and answers its server-final', () => {
    const s = new ScramServer(vectorVerifier(), V.serverNonce);
    expect(s.serverFirst(V.clientFirst)).toBe(V.serverFirst);
    expect(s.serverFinal(V.clientFinal)).toBe(V.serverFinal);
  });

  it('verifier string has the pg_authid shape', () => {
    const v = vectorVerifier();
    expect(v.iterations).toBe(4096);
    expect(scramVerifierString(v)).toMatch(/^SCRAM-SHA-256\$4096:W22ZaJ0SNY7soEsUEjb6gQ==\$[A-Za-z0-9+/=]{44}:[A-Za-z0-9+/=]{44}$/);
  });

  it('client and server agree end to end; a wrong password is refused', () => {
    const v = makeScramVerifier('s3cret-value');
    const ok = new ScramClient('s3cret-value');
    const srv = new ScramServer(v);
    const final = srv.serverFinal(ok.clientFinal(srv.serverFirst(ok.clientFirst())));
    expect(() => ok.verifyServerFinal(final)).not.toThrow();

    const bad = new ScramClient('wrong');
    const srv2 = new ScramServer(v);
    expect(() => srv2.serverFinal(bad.clientFinal(srv2.serverFirst(bad.clientFirst())))).toThrow(ScramError);
  });

  it('server refuses channel binding, authzid, nonce tampering and replays', () => {
    const v = vectorVerifier();
    expect(() => new ScramServer(v).serverFirst('p=tls-server-end-point,,n=,r=abc')).toThrow(/channel binding/);
    expect(() => new ScramServer(v).serverFirst('n,a=admin,n=,r=abc')).toThrow(/authorization/);
    expect(() => new ScramServer(v).serverFirst('n,,n=,r=abc,x=ext')).toThrow(ScramError);
    const s = new ScramServer(v, V.serverNonce);
    s.serverFirst(V.clientFirst);
    expect(() => s.serverFinal(V.clientFinal.replace('r=rOpr', 'r=xOpr'))).toThrow(/nonce/);
    // A server state is single-use.
    expect(() => s.serverFinal(V.clientFinal)).toThrow(ScramError);
    const s2 = new ScramServer(v, V.serverNonce);
    s2.serverFirst(V.clientFirst);
    expect(() => s2.serverFinal(V.clientFinal.replace('c=biws', 'c=eSws'))).toThrow(/channel binding/);
  });

  it('client refuses a server that does not extend its nonce or forges the final signature', () => {
    const c = new ScramClient(V.password, { nonce: V.clientNonce, user: 'user' });
    c.clientFirst();
    expect(() => c.clientFinal('r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096')).toThrow(/nonce/);
    const c2 = new ScramClient(V.password, { nonce: V.clientNonce, user: 'user' });
    c2.clientFirst();
    c2.clientFinal(V.serverFirst);
    expect(() => c2.verifyServerFinal('v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=')).toThrow(/signature/);
    const c3 = new ScramClient(V.password, { nonce: 'abc' });
    c3.clientFirst();
    expect(() => c3.clientFinal('r=abcd,s=AA==,i=99999999')).toThrow(/too high/);
  });
});
