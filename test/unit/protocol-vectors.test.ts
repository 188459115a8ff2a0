// The golden vectors in PROTOCOL.md §8 are the contract with other implementations: this test
// reads them from the document itself, so the document and the code cannot drift apart.
import { meshAddress6 } from '../../src/routing/address.js';
import { readFileSync } from 'node:fs';
import { ed25519, x25519 } from '@noble/curves/ed25519.js';
import { describe, expect, it } from 'vitest';
import { tunnelInterfaceName, tunnelLinkLocal } from '../../src/neighbors/names.js';
import {
  compareBytes, decodeMessage, encodeMessage, identityFromSeed, toBase64, toHex, Verifier,
  type Message,
} from '../../src/protocol/index.js';

const doc = readFileSync(new URL('../../PROTOCOL.md', import.meta.url), 'utf8');

function hex(s: string): Uint8Array {
  return Uint8Array.from(Buffer.from(s, 'hex'));
}
function keyLine(name: string): string {
  const m = doc.match(new RegExp(`^${name}\\s+(\\S+)$`, 'm'));
  if (!m) throw new Error(`PROTOCOL.md has no "${name}" line`);
  return m[1]!;
}

const A = identityFromSeed(hex(keyLine('A seed')));
const B = identityFromSeed(hex(keyLine('B seed')));
const C = identityFromSeed(hex(keyLine('C seed')));
// Computed with noble, independently of the agent's OpenSSL path.
const tunnelKeys: Record<string, Uint8Array> = {
  A: x25519.getPublicKey(hex(keyLine('A tunnel secret'))),
  B: x25519.getPublicKey(hex(keyLine('B tunnel secret'))),
};

interface Vector { sender: string; text: string; signed: string; signature: string }
const vectors: Vector[] = [...doc.matchAll(/```vector\n([\s\S]*?)```/g)].map((m) => {
  const body = m[1]!;
  const field = (k: string) => body.match(new RegExp(`^${k}:\\s*(.*)$`, 'm'))?.[1]?.trim() ?? '';
  const signed = body.split('signed:')[1]!.split('signature:')[0]!.replace(/\s+/g, '');
  return { sender: field('sender'), text: field('text'), signed, signature: field('signature') };
});

describe('PROTOCOL.md test vectors', () => {
  it('lists the keys and one vector per message type', () => {
    expect(toBase64(A.publicKey)).toBe(keyLine('A publicKey'));
    expect(toBase64(B.publicKey)).toBe(keyLine('B publicKey'));
    expect(toBase64(C.publicKey)).toBe(keyLine('C publicKey'));
    expect(toBase64(tunnelKeys.A!)).toBe(keyLine('A tunnelKey'));
    expect(toBase64(tunnelKeys.B!)).toBe(keyLine('B tunnelKey'));
    expect(vectors.map((v) => v.text.split(' ')[0])).toEqual([
      'scrooge_hello', 'scrooge_hello_confirm', 'scrooge_tunnel', 'scrooge_tunnel_confirm',
    ]);
  });

  it.each(vectors.map((v) => [v.text.split(' ')[0], v] as const))('%s: decodes, verifies and re-encodes to the same bytes', (_type, v) => {
    const sender = v.sender === 'A' ? A : B;
    const decoded = decodeMessage(new TextEncoder().encode(v.text));
    if (!decoded.ok) throw new Error(`decode failed: ${decoded.reason}`);
    expect(toHex(decoded.signedBytes)).toBe(v.signed);
    expect(toHex(decoded.signature)).toBe(v.signature);
    expect(new Verifier().verify(decoded.publicKeyText, decoded.message.publicKey, decoded.signedBytes, decoded.signature)).toBe(true);
    expect(ed25519.verify(decoded.signature, decoded.signedBytes, sender.publicKey, { zip215: false })).toBe(true);
    // Deterministic signing: our encoder produces the very same text from the fields.
    const again = encodeMessage(decoded.message as Message, sender.sign);
    expect(again.text).toBe(v.text);
    // Each side's own tunnel key: B answers A's offer with a fresh key, never A's (§6).
    if ('tunnelKey' in decoded.message) expect(toBase64(decoded.message.tunnelKey)).toBe(toBase64(tunnelKeys[v.sender]!));
  });

  it("the seqs are in the epochs the text says (A's, then B's)", () => {
    const epochOf = (who: string) => BigInt(doc.match(new RegExp(`${who}'s\\s+(?:are\\s+)?in\\s+epoch\\s+(\\d+)`))?.[1] ?? 'no such line');
    for (const v of vectors) {
      const seq = BigInt(v.text.split(' ').at(-2)!);
      expect(seq >> 32n, `${v.sender}: ${seq}`).toBe(epochOf(v.sender));
    }
    expect(epochOf('B')).toBe(epochOf('A') + 1n);
  });

  it('the crossing-offer example: raw-byte order and base64-text order differ, raw bytes decide', () => {
    expect(compareBytes(A.publicKey, C.publicKey)).toBeLessThan(0);
    expect(toBase64(C.publicKey) < toBase64(A.publicKey)).toBe(true);
    expect([A.publicKey[0], C.publicKey[0]]).toEqual([0x03, 0xde]);
  });

  it('the derived interface names and tunnel addresses', () => {
    expect(tunnelInterfaceName(A.publicKey, B.publicKey)).toBe(keyLine('A ifname for B'));
    expect(tunnelInterfaceName(B.publicKey, A.publicKey)).toBe(keyLine('B ifname for A'));
    expect(`${tunnelLinkLocal(A.publicKey)}/64`).toBe(keyLine('A tunnel address'));
    expect(`${tunnelLinkLocal(B.publicKey)}/64`).toBe(keyLine('B tunnel address'));
    expect(`${meshAddress6(A.publicKey)}/128`).toBe(keyLine('A mesh address'));
    expect(`${meshAddress6(B.publicKey)}/128`).toBe(keyLine('B mesh address'));
  });
});
