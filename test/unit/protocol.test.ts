import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  canonicalIPv6, decodeMessage, encodeMessage, formatEndpoint, identityFromSeed, isLinkLocalUnicast, isStrictPublicKey,
  MAX_DATAGRAM_BYTES, parseEndpoint, toBase64, Verifier, U64_MAX,
  type Endpoint, type Message,
} from '../../src/protocol/index.js';

const enc = new TextEncoder();
const A = identityFromSeed(new Uint8Array(32).fill(1));
const B = identityFromSeed(new Uint8Array(32).fill(2));
const T = x25519.getPublicKey(new Uint8Array(32).fill(3));

function hello(seq = 7n, control: Endpoint = { address: 'fe80::1', zone: 'eth0', port: 51819 }): Message {
  return { type: 'scrooge_hello', publicKey: A.publicKey, control, seq };
}
function tunnel(): Message {
  return { type: 'scrooge_tunnel', publicKey: A.publicKey, recipient: B.publicKey, tunnelKey: T, endpoint: { address: 'fe80::1', zone: 'eth0', port: 51820 }, seq: 9n };
}
function verifies(text: string | Uint8Array): boolean | string {
  const d = decodeMessage(typeof text === 'string' ? enc.encode(text) : text);
  if (!d.ok) return d.reason;
  return new Verifier().verify(d.publicKeyText, d.message.publicKey, d.signedBytes, d.signature);
}

describe('codec', () => {
  it('a hello built by the codec verifies', () => {
    expect(verifies(encodeMessage(hello(), A.sign).text)).toBe(true);
    expect(verifies(encodeMessage(tunnel(), A.sign).text)).toBe(true);
  });

  it('a one-byte change anywhere in the signed part fails (decode or verify)', () => {
    for (const m of [hello(), tunnel()]) {
      const text = encodeMessage(m, A.sign).text;
      const sigStart = text.lastIndexOf(' ') + 1;
      for (let i = 0; i < text.length; i++) {
        for (const ch of i < sigStart ? ['0', '9', 'a', 'Z', ' ', '%'] : ['A', 'B', '/']) {
          if (text[i] === ch) continue;
          const mutated = text.slice(0, i) + ch + text.slice(i + 1);
          expect(verifies(mutated), `position ${i} -> ${ch}: ${mutated}`).not.toBe(true);
        }
      }
    }
  });

  it('binds the message type: a confirm re-labelled as another type does not verify', () => {
    const confirm = encodeMessage({ type: 'scrooge_tunnel_confirm', publicKey: A.publicKey, recipient: B.publicKey, tunnelKey: T, endpoint: { address: 'fe80::1', port: 51820 }, seq: 3n }, A.sign).text;
    expect(verifies(confirm)).toBe(true);
    expect(verifies(confirm.replace('scrooge_tunnel_confirm', 'scrooge_tunnel'))).toBe(false);
  });

  it.each([
    ['trailing newline', (t: string) => t + '\n', 'not-text'],
    ['tab separator', (t: string) => t.replace(' ', '\t'), 'not-text'],
    ['double space', (t: string) => t.replace(' ', '  '), 'not-text'],
    ['extra field', (t: string) => t + ' x', 'field-count'],
    ['missing field', (t: string) => t.split(' ').slice(0, 4).join(' '), 'field-count'],
    ['unknown type', (t: string) => t.replace('scrooge_hello', 'scrooge_howdy'), 'unknown-type'],
    ['leading zero seq', (t: string) => t.replace(' 7 ', ' 07 '), 'bad-seq'],
    ['seq above u64', (t: string) => t.replace(' 7 ', ` ${U64_MAX + 1n} `), 'bad-seq'],
    ['negative seq', (t: string) => t.replace(' 7 ', ' -7 '), 'bad-seq'],
    ['uppercase address', (t: string) => t.replace('fe80::1', 'FE80::1'), 'bad-address'],
    ['non-canonical address', (t: string) => t.replace('fe80::1', 'fe80:0::1'), 'bad-address'],
    ['IPv4 address', (t: string) => t.replace('[fe80::1%eth0]', '[10.0.0.1]'), 'bad-address'],
    ['missing brackets', (t: string) => t.replace('[fe80::1%eth0]', 'fe80::1%eth0'), 'bad-address'],
    ['empty zone', (t: string) => t.replace('%eth0', '%'), 'bad-address'],
    ['port 0', (t: string) => t.replace(':51819', ':0'), 'bad-port'],
    ['port 65536', (t: string) => t.replace(':51819', ':65536'), 'bad-port'],
    ['port leading zero', (t: string) => t.replace(':51819', ':051819'), 'bad-port'],
    ['non-canonical base64 key', (t: string) => t.replace(/^(scrooge_hello \S{42})(\S)/, (_, p: string, c: string) => p + String.fromCharCode(c.charCodeAt(0) + 1)), 'bad-public-key'],
    ['unpadded key', (t: string) => t.replace(/= \[/, ' ['), 'bad-public-key'],
    ['short signature', (t: string) => t.slice(0, -4) + '==', 'bad-signature-encoding'],
    ['non-ASCII', (t: string) => t.replace('eth0', 'eth\u00e9'), 'not-text'],
  ])('rejects %s', (_name, mutate, reason) => {
    const text = encodeMessage(hello(), A.sign).text;
    expect(verifies(mutate(text))).toBe(reason);
  });

  it('rejects oversized datagrams before parsing', () => {
    expect(verifies(new Uint8Array(MAX_DATAGRAM_BYTES + 1).fill(0x41))).toBe('oversized');
    expect(verifies(new Uint8Array(0))).toBe('not-text');
  });

  it('rejects an all-zero tunnel key', () => {
    const text = encodeMessage(tunnel(), A.sign).text.replace(toBase64(T), toBase64(new Uint8Array(32)));
    expect(verifies(text)).toBe('bad-tunnel-key');
  });

  it('the longest possible message fits well under the datagram limit', () => {
    const longest = encodeMessage({
      type: 'scrooge_tunnel_confirm', publicKey: A.publicKey, recipient: B.publicKey, tunnelKey: T,
      endpoint: { address: 'fe80:1111:2222:3333:4444:5555:6666:7777', zone: 'abcdefghijklmno', port: 65535 }, seq: U64_MAX,
    }, A.sign);
    expect(longest.bytes.length).toBe(331);
  });

  it('throws TypeError/RangeError on a caller bug, not on input', () => {
    expect(() => encodeMessage({ ...hello(), publicKey: new Uint8Array(31) } as Message, A.sign)).toThrow(/"publicKey" expected 32 bytes, got 31/);
    expect(() => encodeMessage(hello(-1n), A.sign)).toThrow(RangeError);
    expect(() => encodeMessage(hello(1n, { address: 'nope', port: 1 }), A.sign)).toThrow(TypeError);
  });
});

const endpointArb = fc.record({
  groups: fc.array(fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff })), { minLength: 8, maxLength: 8 }),
  zone: fc.option(fc.stringMatching(/^[a-z0-9_.-]{1,15}$/), { nil: undefined }),
  port: fc.integer({ min: 1, max: 65535 }),
}).map(({ groups, zone, port }) => ({ address: canonicalIPv6(groups.map((g) => g.toString(16)).join(':'))!, zone, port }));

const messageArb: fc.Arbitrary<Message> = fc.record({
  kind: fc.integer({ min: 0, max: 3 }),
  ep: endpointArb,
  seq: fc.bigInt({ min: 0n, max: U64_MAX }),
  tk: fc.uint8Array({ minLength: 32, maxLength: 32 }).filter((b) => b.some((x) => x !== 0)),
}).map(({ kind, ep, seq, tk }): Message => {
  const base = { publicKey: A.publicKey, seq };
  switch (kind) {
    case 0: return { ...base, type: 'scrooge_hello', control: ep };
    case 1: return { ...base, type: 'scrooge_hello_confirm', recipient: B.publicKey, control: ep };
    case 2: return { ...base, type: 'scrooge_tunnel', recipient: B.publicKey, tunnelKey: tk, endpoint: ep };
    default: return { ...base, type: 'scrooge_tunnel_confirm', recipient: B.publicKey, tunnelKey: tk, endpoint: ep };
  }
});

function strip(m: Message) {
  const ep = 'control' in m ? m.control : m.endpoint;
  return { ...m, ...('control' in m ? { control: { ...ep } } : { endpoint: { ...ep } }) };
}

describe('codec properties', () => {
  it('round-trips every valid message and the result verifies', () => {
    fc.assert(fc.property(messageArb, (m) => {
      const { bytes } = encodeMessage(m, A.sign);
      const d = decodeMessage(bytes);
      expect(d.ok).toBe(true);
      if (!d.ok) return;
      expect(strip(d.message)).toEqual(strip(m));
      expect(new Verifier().verify(d.publicKeyText, d.message.publicKey, d.signedBytes, d.signature)).toBe(true);
    }), { numRuns: 300 });
  });

  it('never throws on random bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 1400 }), (bytes) => {
      const d = decodeMessage(bytes);
      expect(typeof d.ok).toBe('boolean');
    }), { numRuns: 2000 });
  });

  it('never throws on mutated valid messages, and a mutation never verifies', () => {
    const valid = fc.sample(messageArb, 20).map((m) => encodeMessage(m, A.sign).bytes);
    fc.assert(fc.property(
      fc.constantFrom(...valid), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
      (orig, edits) => {
        const b = Uint8Array.from(orig);
        for (const [pos, val] of edits) b[pos % b.length] = val;
        const d = decodeMessage(b);
        if (!d.ok) return;
        const changed = b.some((x, i) => x !== orig[i]);
        const ok = new Verifier().verify(d.publicKeyText, d.message.publicKey, d.signedBytes, d.signature);
        expect(ok).toBe(!changed);
      }), { numRuns: 2000 });
  });

  it('endpoints: parse(format(e)) = e, and only canonical text parses', () => {
    fc.assert(fc.property(endpointArb, (e) => {
      const r = parseEndpoint(formatEndpoint(e));
      expect(r.ok && r.endpoint).toEqual(e.zone === undefined ? { address: e.address, port: e.port } : e);
    }));
    expect(canonicalIPv6('2001:db8:0:0:1:0:0:1')).toBe('2001:db8::1:0:0:1');
    expect(canonicalIPv6('2001:0db8::1')).toBe('2001:db8::1');
    expect(canonicalIPv6('2001:db8:0:1:1:1:1:1')).toBe('2001:db8:0:1:1:1:1:1');
    expect(canonicalIPv6('::')).toBe('::');
    expect(canonicalIPv6('1::2::3')).toBeUndefined();
  });

  it('link-local: fe80::/10 in any spelling, nothing else', () => {
    for (const t of ['fe80::1', 'FE80::1', 'fe80:0:0:0:0:0:0:1', 'febf:ffff::1', 'fe9a::']) expect(isLinkLocalUnicast(t), t).toBe(true);
    for (const t of ['fec0::1', 'fe8::1', 'fe7f::1', '::ffff:fe80:1', '2001:db8::fe80', 'fe80::1%eth0', 'fe80::g', '']) expect(isLinkLocalUnicast(t), t).toBe(false);
    fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 8, maxLength: 8 }), (g) => {
      const text = g.map((x) => x.toString(16)).join(':');
      expect(isLinkLocalUnicast(text)).toBe((g[0]! & 0xffc0) === 0xfe80);
    }), { numRuns: 2000 });
  });
});

describe('strict verification (RFC 8032, not ZIP-215)', () => {
  const L = (1n << 252n) + 27742317777372353535851937790883648493n;
  const msg = new Uint8Array([1, 2, 3]);
  const keyId = toBase64(A.publicKey);

  it('rejects S >= L (the malleable twin of a valid signature)', () => {
    const sig = A.sign(msg);
    const s = BigInt('0x' + Buffer.from(sig.slice(32)).reverse().toString('hex')) + L;
    const sPlusL = Uint8Array.from(Buffer.from(s.toString(16).padStart(64, '0'), 'hex').reverse());
    const forged = new Uint8Array(64);
    forged.set(sig.slice(0, 32));
    forged.set(sPlusL, 32);
    expect(new Verifier().verify(keyId, A.publicKey, msg, sig)).toBe(true);
    expect(new Verifier().verify(keyId, A.publicKey, msg, forged)).toBe(false);
  });

  it('rejects small-order and non-canonical public keys', () => {
    const identity = Uint8Array.from([1, ...new Array(31).fill(0)]); // the neutral point: small order
    expect(isStrictPublicKey(identity)).toBe(false);
    // y = p (non-canonical encoding of y = 0)
    const p = (1n << 255n) - 19n;
    const nonCanonical = Uint8Array.from(Buffer.from(p.toString(16).padStart(64, '0'), 'hex').reverse());
    expect(isStrictPublicKey(nonCanonical)).toBe(false);
    expect(isStrictPublicKey(A.publicKey)).toBe(true);
    // A "signature" that verifies under the neutral key with ZIP-215 rules is refused.
    const sig = new Uint8Array(64);
    sig[0] = 1; // R = neutral point, S = 0
    expect(ed25519.verify(sig, msg, identity, { zip215: true })).toBe(true);
    expect(new Verifier().verify('id', identity, msg, sig)).toBe(false);
  });

  it('agrees with noble (zip215: false) on random corruptions', () => {
    fc.assert(fc.property(fc.nat(63), fc.integer({ min: 1, max: 255 }), (pos, x) => {
      const sig = A.sign(msg);
      sig[pos]! ^= x;
      expect(new Verifier().verify(keyId, A.publicKey, msg, sig)).toBe(ed25519.verify(sig, msg, A.publicKey, { zip215: false }));
    }), { numRuns: 300 });
  });
});

describe('keys through OpenSSL match noble', () => {
  it('ed25519 public keys and x25519 (WireGuard) public keys', async () => {
    const { publicKeyFromSeed, x25519PublicKey } = await import('../../src/protocol/crypto.js');
    fc.assert(fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), (secret) => {
      expect(publicKeyFromSeed(secret)).toEqual(ed25519.getPublicKey(secret));
      expect(x25519PublicKey(secret)).toEqual(x25519.getPublicKey(secret));
    }), { numRuns: 100 });
  });
});
