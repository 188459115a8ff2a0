// PROTOCOL.md §2's grammar at its own limits, fed to the decoder: lengths one short, exact and
// one over; the last base64 character of keys and signatures; the numeric bounds of seq and
// port; zone lengths; and every input that is not a `line`, each with the counter §2 names.
// The rules quoted from the document are checked to be there, so the two cannot drift apart.
import { readFileSync } from 'node:fs';
import { x25519 } from '@noble/curves/ed25519.js';
import { describe, expect, expectTypeOf, it } from 'vitest';
import {
  decodeMessage, encodeMessage, identityFromSeed, parseEndpoint, U64_MAX,
  type DecodeFailure, type Message,
} from '../../src/protocol/index.js';

const doc = readFileSync(new URL('../../PROTOCOL.md', import.meta.url), 'utf8');
const abnf = doc.match(/```abnf\n([\s\S]*?)```/)?.[1] ?? '';

const enc = new TextEncoder();
const A = identityFromSeed(new Uint8Array(32).fill(1));
const B = identityFromSeed(new Uint8Array(32).fill(2));
const T = x25519.getPublicKey(new Uint8Array(32).fill(3));
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

const HELLO = encodeMessage({ type: 'scrooge_hello', publicKey: A.publicKey, control: { address: 'fe80::1', zone: 'eth0', port: 51819 }, seq: 7n }, A.sign).text;
const TUNNEL = encodeMessage({
  type: 'scrooge_tunnel', publicKey: A.publicKey, recipient: B.publicKey, tunnelKey: T,
  endpoint: { address: 'fe80::1', zone: 'eth0', port: 51820 }, seq: 9n,
} satisfies Message, A.sign).text;

/** Field positions (tokens) in a hello and in a tunnel message. */
const H = { key: 1, endpoint: 2, seq: 3, signature: 4 } as const;
const U = { key: 1, recipient: 2, tunnelKey: 3, endpoint: 4, seq: 5, signature: 6 } as const;

function withToken(text: string, at: number, value: string): string {
  const f = text.split(' ');
  f[at] = value;
  return f.join(' ');
}
/** 'ok' if the grammar accepts (the signature is not checked here), else the counter. */
function decode(text: string | Uint8Array): 'ok' | DecodeFailure {
  const d = decodeMessage(typeof text === 'string' ? enc.encode(text) : text);
  return d.ok ? 'ok' : d.reason;
}
const key = HELLO.split(' ')[H.key]!;
const sig = HELLO.split(' ')[H.signature]!;

describe('PROTOCOL.md §2 states the rules this test feeds', () => {
  it.each([
    /^line\s+= token \*\(SP token\)/m,
    /^token\s+= 1\*%x21-7E/m,
    /^base64-32\s+= 42b64 b64-4 "="\s+; 44 characters: 32 bytes/m,
    /^base64-64\s+= 85b64 b64-16 "=="\s+; 88 characters: 64 bytes/m,
    /^b64\s+= ALPHA \/ DIGIT \/ "\+" \/ "\/"/m,
    /^zone\s+= 1\*15\( ALPHA \/ DIGIT \/ "_" \/ "\." \/ "-" \)/m,
    /^port\s+= %x31-39 0\*4DIGIT\s+; and value <= 65535$/m,
    /^seq\s+= "0" \/ %x31-39 0\*19DIGIT\s+; and value <= 18446744073709551615$/m,
  ])('%s', (rule) => {
    expect(abnf).toMatch(rule);
  });
});

describe('keys: base64-32 (42 b64, one of 16 final characters, "=")', () => {
  it('the encoder writes 44 characters', () => expect(key).toHaveLength(44));

  it.each([
    ['43 characters (no padding)', key.slice(0, 43), 'bad-public-key'],
    ['44 characters', key, 'ok'],
    ['45 characters (an extra "=")', key + '=', 'bad-public-key'],
    ['45 characters (43 b64 + "=", the old grammar)', key.slice(0, 43) + 'A=', 'bad-public-key'],
    ['44 b64 characters, no "="', key.slice(0, 43) + 'A', 'bad-public-key'],
    ['42 b64 + "=="', key.slice(0, 42) + '==', 'bad-public-key'],
    ['URL-safe alphabet', key.slice(0, 10) + '-' + key.slice(11), 'bad-public-key'],
    ['a non-b64 character', key.slice(0, 10) + '.' + key.slice(11), 'bad-public-key'],
  ])('publicKey of %s: %s', (_what, k, want) => {
    expect(decode(withToken(HELLO, H.key, k))).toBe(want);
  });

  it('exactly the 16 characters A E I M Q U Y c g k o s w 0 4 8 may come last, in every key field', () => {
    const accepted = (text: string, at: number) =>
      [...B64].filter((c) => {
        const k = text.split(' ')[at]!;
        return decode(withToken(text, at, k.slice(0, 42) + c + '=')) === 'ok';
      }).join('');
    expect(accepted(HELLO, H.key)).toBe('AEIMQUYcgkosw048');
    expect(accepted(TUNNEL, U.recipient)).toBe('AEIMQUYcgkosw048');
    expect(accepted(TUNNEL, U.tunnelKey)).toBe('AEIMQUYcgkosw048');
    // ... and each other character is counted against its field.
    const k = key.slice(0, 42) + 'B=';
    expect([decode(withToken(TUNNEL, U.key, k)), decode(withToken(TUNNEL, U.recipient, k)), decode(withToken(TUNNEL, U.tunnelKey, k))])
      .toEqual(['bad-public-key', 'bad-recipient', 'bad-tunnel-key']);
  });

  it('the all-zero tunnel key is refused; one bit set is a key', () => {
    expect(decode(withToken(TUNNEL, U.tunnelKey, 'A'.repeat(43) + '='))).toBe('bad-tunnel-key');
    expect(decode(withToken(TUNNEL, U.tunnelKey, 'A'.repeat(42) + 'E='))).toBe('ok');
  });
});

describe('signatures: base64-64 (85 b64, one of 4 final characters, "==")', () => {
  it('the encoder writes 88 characters', () => expect(sig).toHaveLength(88));

  it.each([
    ['87 characters', sig.slice(0, 87), 'bad-signature-encoding'],
    ['88 characters', sig, 'ok'],
    ['89 characters', sig + '=', 'bad-signature-encoding'],
    ['86 b64 + "=" (a 65th byte)', sig.slice(0, 86) + 'A=', 'bad-signature-encoding'],
    ['no padding', sig.slice(0, 86), 'bad-signature-encoding'],
  ])('%s', (_what, s, want) => {
    expect(decode(withToken(HELLO, H.signature, s))).toBe(want);
  });

  it('exactly A Q g w may come last', () => {
    const ok = [...B64].filter((c) => decode(withToken(HELLO, H.signature, sig.slice(0, 85) + c + '==')) === 'ok').join('');
    expect(ok).toBe('AQgw');
  });
});

describe('seq: "0" / %x31-39 0*19DIGIT, value <= 2^64 - 1', () => {
  it.each([
    ['0', 'ok'],
    ['1', 'ok'],
    ['18446744073709551615', 'ok'], // 2^64 - 1
    ['18446744073709551616', 'bad-seq'], // 2^64
    ['10000000000000000000', 'ok'], // 20 digits, below the bound
    ['99999999999999999999', 'bad-seq'], // 20 digits, above it
    ['100000000000000000000', 'bad-seq'], // 21 digits
    ['00', 'bad-seq'],
    ['07', 'bad-seq'],
    ['018446744073709551615', 'bad-seq'],
    ['-1', 'bad-seq'],
    ['+1', 'bad-seq'],
    ['1e3', 'bad-seq'],
    ['0x10', 'bad-seq'],
  ])('%s: %s', (seq, want) => {
    expect(decode(withToken(HELLO, H.seq, seq))).toBe(want);
  });

  it('the bound is the one in the bytes module', () => expect(U64_MAX.toString()).toBe('18446744073709551615'));
});

describe('port: %x31-39 0*4DIGIT, value <= 65535', () => {
  it.each([
    ['1', 'ok'],
    ['65535', 'ok'],
    ['65536', 'bad-port'],
    ['99999', 'bad-port'],
    ['100000', 'bad-port'],
    ['0', 'bad-port'],
    ['051819', 'bad-port'],
    ['', 'bad-port'],
    ['5181a', 'bad-port'],
    ['1234567890', 'bad-port'], // long, after the longest address and zone: still the port's fault
  ])('"%s": %s', (port, want) => {
    expect(decode(withToken(HELLO, H.endpoint, `[fe80::1%eth0]:${port}`))).toBe(want);
    expect(decode(withToken(HELLO, H.endpoint, `[fe80:1111:2222:3333:4444:5555:6666:7777%abcdefghijklmno]:${port}`))).toBe(want);
  });
});

describe('endpoint: "[" ipv6 [ "%" zone ] "]:" port', () => {
  it.each([
    ['15-character zone', '[fe80::1%abcdefghijklmno]:1', 'ok'],
    ['16-character zone', '[fe80::1%abcdefghijklmnop]:1', 'bad-address'],
    ['empty zone', '[fe80::1%]:1', 'bad-address'],
    ['zone with all allowed characters', '[fe80::1%aZ09_.-]:1', 'ok'],
    ['zone with "/"', '[fe80::1%a/b]:1', 'bad-address'],
    ['zone with "%"', '[fe80::1%a%b]:1', 'bad-address'],
    ['no zone', '[fe80::1]:1', 'ok'],
    ['the longest canonical address', '[fe80:1111:2222:3333:4444:5555:6666:7777]:1', 'ok'],
    ['uppercase hex', '[FE80::1]:1', 'bad-address'],
    ['a leading zero in a group', '[fe80::01]:1', 'bad-address'],
    ['"::" for one zero group', '[fe80::1:2:3:4:5:6]:1', 'bad-address'],
    ['the longer zero run compressed', '[1:0:0:1::]:1', 'ok'],
    ['the shorter zero run compressed', '[1::1:0:0:0:0]:1', 'bad-address'],
    ['of two equal runs, the first compressed', '[1::1:0:0:1:1]:1', 'ok'],
    ['of two equal runs, the second compressed', '[1:0:0:1::1:1]:1', 'bad-address'],
    ['a dotted quad', '[::ffff:10.0.0.1]:1', 'bad-address'],
    ['no brackets', 'fe80::1:1', 'bad-address'],
    ['no ":" after "]"', '[fe80::1]1', 'bad-address'],
  ])('%s: %s', (_what, ep, want) => {
    expect(decode(withToken(HELLO, H.endpoint, ep))).toBe(want);
  });
});

describe('not a line: not-text, whatever the message type', () => {
  const byte = (text: string, at: number, b: number) => {
    const out = enc.encode(text);
    out[at] = b;
    return out;
  };
  const inputs: [string, (t: string) => string | Uint8Array][] = [
    ['empty datagram', () => new Uint8Array(0)],
    ['a tab for a space', (t) => t.replace(' ', '\t')],
    ['a tab at the end', (t) => t + '\t'],
    ['CR at the end', (t) => t + '\r'],
    ['LF at the end', (t) => t + '\n'],
    ['CRLF at the end', (t) => t + '\r\n'],
    ['NUL at the end', (t) => t + '\0'],
    ['NUL inside a token', (t) => byte(t, 3, 0)],
    ['DEL (0x7f)', (t) => byte(t, 3, 0x7f)],
    ['a byte above 0x7f', (t) => byte(t, 3, 0xe9)],
    ['a leading space', (t) => ' ' + t],
    ['a trailing space', (t) => t + ' '],
    ['two spaces in a row', (t) => t.replace(' ', '  ')],
    ['two spaces making up for a missing field (the count is right)', (t) => withToken(t, 2, '')],
    ['a single space', () => ' '],
  ];
  it.each(inputs)('%s', (_what, mutate) => {
    for (const text of [HELLO, TUNNEL]) expect(decode(mutate(text))).toBe('not-text');
  });
});

describe('type and field count come before the fields', () => {
  it.each([
    ['the type in upper case (matched case-sensitively)', HELLO.replace('scrooge_hello', 'SCROOGE_HELLO'), 'unknown-type'],
    ['an unknown type', HELLO.replace('scrooge_hello', 'scrooge_howdy'), 'unknown-type'],
    ['a type alone', 'scrooge_hello', 'field-count'],
    ['one field missing', HELLO.split(' ').slice(0, 4).join(' '), 'field-count'],
    ['one field too many', HELLO + ' x', 'field-count'],
    ['a hello with a tunnel message\'s count', withToken(TUNNEL, 0, 'scrooge_hello'), 'field-count'],
    ['bad fields everywhere: the first one names the counter', withToken(withToken(HELLO, H.key, 'x'), H.seq, 'x'), 'bad-public-key'],
    ['a bad address and a bad seq: the address', withToken(withToken(HELLO, H.endpoint, 'x'), H.seq, 'x'), 'bad-address'],
    ['a bad seq and a bad signature: the seq', withToken(withToken(HELLO, H.seq, 'x'), H.signature, 'x'), 'bad-seq'],
  ])('%s: %s', (_what, text, want) => {
    expect(decode(text)).toBe(want);
  });
});

it('parseEndpoint names its failure with a DecodeFailure, no cast needed (issue 10 defect 8)', () => {
  const r = parseEndpoint('[fe80::1]:0');
  expect(r).toEqual({ ok: false, reason: 'bad-port' });
  if (!r.ok) expectTypeOf(r.reason).toExtend<DecodeFailure>();
});
