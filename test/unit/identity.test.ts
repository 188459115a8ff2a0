import { mkdtempSync, readFileSync, statSync, writeFileSync, chmodSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeKeyFile, encodeKeyFile, inspectKeyFile } from '../../src/identity/keyfile.js';
import { publicKeyFromSeed, toBase64 } from '../../src/protocol/index.js';
import { nextEpoch, SequenceSource } from '../../src/protocol/sequence.js';
import { createKeyFile, loadIdentity, readPublicKey } from '../../src/system/keystore.js';

const seed = new Uint8Array(32).fill(7);
const FAST = { N: 2 ** 4, r: 8, p: 1 } as const; // keep unit tests fast; the default is 2^17

describe('key file codec', () => {
  it('round-trips a plain key', async () => {
    const text = await encodeKeyFile(seed);
    expect(await decodeKeyFile(text, undefined)).toEqual(seed);
    expect(inspectKeyFile(text)).toEqual({ publicKey: publicKeyFromSeed(seed), sealed: false });
  });

  it('seals with a passphrase; the wrong one is a clear error', async () => {
    const text = await encodeKeyFile(seed, 'correct horse', FAST);
    expect(text).not.toContain(toBase64(seed));
    expect(inspectKeyFile(text).sealed).toBe(true);
    expect(await decodeKeyFile(text, 'correct horse')).toEqual(seed);
    await expect(decodeKeyFile(text, 'wrong')).rejects.toMatchObject({ code: 'EPASSPHRASE', message: expect.stringMatching(/wrong passphrase/) });
    await expect(decodeKeyFile(text, undefined)).rejects.toMatchObject({ code: 'EPASSPHRASE' });
  });

  it('detects a swapped public key in a sealed file', async () => {
    const text = await encodeKeyFile(seed, 'pw', FAST);
    const other = toBase64(publicKeyFromSeed(new Uint8Array(32).fill(8)));
    const swapped = text.replace(/"publicKey": "[^"]+"/, `"publicKey": "${other}"`);
    await expect(decodeKeyFile(swapped, 'pw')).rejects.toMatchObject({ code: 'EPASSPHRASE' });
  });

  it.each([
    ['not JSON', 'hello'],
    ['wrong format tag', '{"scrooge":"v0","publicKey":"x"}'],
    ['both private and sealed', JSON.stringify({ scrooge: 'identity-v1', publicKey: toBase64(publicKeyFromSeed(seed)), privateKey: toBase64(seed), sealed: {} })],
    ['mismatched public key', JSON.stringify({ scrooge: 'identity-v1', publicKey: toBase64(publicKeyFromSeed(new Uint8Array(32))), privateKey: toBase64(seed) })],
    ['absurd scrypt cost', JSON.stringify({ scrooge: 'identity-v1', publicKey: toBase64(publicKeyFromSeed(seed)), sealed: { kdf: 'scrypt', N: 2 ** 30, r: 8, p: 1, salt: 'AAAAAAAAAAAAAAAAAAAAAA==', cipher: 'xchacha20-poly1305', nonce: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', ciphertext: toBase64(new Uint8Array(48)) } })],
  ])('rejects a bad file: %s', async (_n, text) => {
    await expect(decodeKeyFile(text, 'pw')).rejects.toMatchObject({ code: 'EKEYFILE' });
  });
});

describe('key files on disk', () => {
  const dir = mkdtempSync(join(tmpdir(), 'scrooge-key-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('creates 0600, refuses to overwrite without force, and warns on loose permissions', async () => {
    const path = join(dir, 'node.key');
    const pub = await createKeyFile(path);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(await readPublicKey(path)).toEqual(pub);
    await expect(createKeyFile(path)).rejects.toMatchObject({ code: 'EEXIST' });
    const before = readFileSync(path, 'utf8');
    const pub2 = await createKeyFile(path, { force: true });
    expect(pub2).not.toEqual(pub);
    expect(readFileSync(path, 'utf8')).not.toBe(before);
    expect((await loadIdentity(path)).warning).toBeUndefined();
    chmodSync(path, 0o644);
    expect((await loadIdentity(path)).warning).toMatch(/readable by others.*chmod 600/);
  });

  it('a missing file says how to make one', async () => {
    await expect(loadIdentity(join(dir, 'nope'))).rejects.toMatchObject({ code: 'EKEYFILE', hint: expect.stringMatching(/scrooge keygen/) });
    writeFileSync(join(dir, 'junk'), 'junk');
    await expect(loadIdentity(join(dir, 'junk'))).rejects.toMatchObject({ code: 'EKEYFILE' });
  });
});

describe('sequence numbers across restarts', () => {
  it('every seq after a restart is larger than every seq before it', () => {
    let persisted: bigint | undefined;
    let last = -1n;
    for (const clock of [1_700_000_000, 1_700_000_000, 1_699_000_000, 0]) {
      // Restarts within the same second, with the clock going backwards, and with no clock.
      const epoch = nextEpoch(persisted, clock);
      persisted = epoch;
      const src = new SequenceSource(epoch, (e) => { persisted = e; });
      for (let i = 0; i < 3; i++) {
        const s = src.next();
        expect(s > last).toBe(true);
        last = s;
      }
    }
  });

  it('without saved state the clock keeps it moving forward', () => {
    const before = new SequenceSource(nextEpoch(undefined, 1_700_000_000), () => {}).next();
    const after = new SequenceSource(nextEpoch(undefined, 1_700_000_001), () => {}).next();
    expect(after > before).toBe(true);
  });

  it('persists a new epoch before using it when the counter wraps', () => {
    const saved: bigint[] = [];
    const src = new SequenceSource(5n, (e) => saved.push(e));
    (src as unknown as { counter: bigint }).counter = (1n << 32n) - 1n;
    expect(src.next()).toBe((5n << 32n) | ((1n << 32n) - 1n));
    expect(src.next()).toBe(6n << 32n);
    expect(saved).toEqual([6n]);
  });
});
