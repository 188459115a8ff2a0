/**
 * The identity key file: JSON holding the ed25519 seed, either in the clear or sealed with a
 * passphrase (envelope encryption: scrypt derives a key-encryption key from the passphrase,
 * XChaCha20-Poly1305 seals the seed; the public key stays readable and is bound as associated
 * data, so `scrooge pubkey` needs no passphrase and a swapped public key is detected).
 *
 * ```json
 * {"scrooge":"identity-v1","publicKey":"<b64>","privateKey":"<b64 seed>"}
 * {"scrooge":"identity-v1","publicKey":"<b64>","sealed":{"kdf":"scrypt","N":131072,"r":8,"p":1,
 *   "salt":"<b64 16>","cipher":"xchacha20-poly1305","nonce":"<b64 24>","ciphertext":"<b64 48>"}}
 * ```
 * Pure: no file system here (see src/system/keystore.ts).
 */
import { scryptAsync } from '@noble/hashes/scrypt.js';
import { xchacha20poly1305 } from '@noble/ciphers/chacha.js';
import { randomBytes } from '@noble/ciphers/utils.js';
import { ScroogeError } from '../errors.js';
import { bytesEqual, fromBase64Strict, toBase64 } from '../protocol/bytes.js';
import { publicKeyFromSeed } from '../protocol/crypto.js';

export const KEYFILE_FORMAT = 'identity-v1';
/** scrypt cost: N=2^17, r=8, p=1 is OWASP's minimum recommendation (about 0.5 s here, once per start). */
export const SCRYPT_DEFAULTS = { N: 2 ** 17, r: 8, p: 1 } as const;
/** Refuse cost parameters beyond this when reading, so a crafted file cannot hang the agent. */
const SCRYPT_MAX_N = 2 ** 20;

interface Sealed {
  kdf: 'scrypt';
  N: number;
  r: number;
  p: number;
  salt: string;
  cipher: 'xchacha20-poly1305';
  nonce: string;
  ciphertext: string;
}
interface KeyFileJson {
  scrooge: typeof KEYFILE_FORMAT;
  publicKey: string;
  privateKey?: string;
  sealed?: Sealed;
}

const enc = new TextEncoder();

function aad(publicKey: Uint8Array): Uint8Array {
  const head = enc.encode(`scrooge ${KEYFILE_FORMAT} `);
  const out = new Uint8Array(head.length + publicKey.length);
  out.set(head);
  out.set(publicKey, head.length);
  return out;
}

async function kek(passphrase: string, salt: Uint8Array, N: number, r: number, p: number): Promise<Uint8Array> {
  return scryptAsync(enc.encode(passphrase), salt, { N, r, p, dkLen: 32 });
}

/** Serializes a seed as a key file; sealed when a passphrase is given. */
export async function encodeKeyFile(seed: Uint8Array, passphrase?: string, params = SCRYPT_DEFAULTS): Promise<string> {
  const publicKey = publicKeyFromSeed(seed);
  const body: KeyFileJson = { scrooge: KEYFILE_FORMAT, publicKey: toBase64(publicKey) };
  if (passphrase === undefined) {
    body.privateKey = toBase64(seed);
  } else {
    if (passphrase.length === 0) throw new ScroogeError('EPASSPHRASE', 'the passphrase is empty');
    const salt = randomBytes(16);
    const nonce = randomBytes(24);
    const key = await kek(passphrase, salt, params.N, params.r, params.p);
    const ciphertext = xchacha20poly1305(key, nonce, aad(publicKey)).encrypt(seed);
    body.sealed = {
      kdf: 'scrypt', N: params.N, r: params.r, p: params.p, salt: toBase64(salt),
      cipher: 'xchacha20-poly1305', nonce: toBase64(nonce), ciphertext: toBase64(ciphertext),
    };
  }
  return JSON.stringify(body, null, 2) + '\n';
}

function bad(what: string, source: string): ScroogeError {
  return new ScroogeError('EKEYFILE', `${source}: not a scrooge key file (${what})`, 'create one with `scrooge keygen --out FILE`');
}

export interface KeyFileInfo {
  publicKey: Uint8Array;
  sealed: boolean;
}

function parse(text: string, source: string): KeyFileJson {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw bad('invalid JSON', source);
  }
  const j = json as Partial<KeyFileJson>;
  if (typeof j !== 'object' || j === null || j.scrooge !== KEYFILE_FORMAT) throw bad(`missing "scrooge": "${KEYFILE_FORMAT}"`, source);
  if (typeof j.publicKey !== 'string' || !fromBase64Strict(j.publicKey, 32)) throw bad('bad "publicKey"', source);
  if ((j.privateKey === undefined) === (j.sealed === undefined)) throw bad('needs exactly one of "privateKey" or "sealed"', source);
  return j as KeyFileJson;
}

/** Reads the public key and whether the file is sealed, without the passphrase. */
export function inspectKeyFile(text: string, source = 'key file'): KeyFileInfo {
  const j = parse(text, source);
  return { publicKey: fromBase64Strict(j.publicKey, 32)!, sealed: j.sealed !== undefined };
}

/** Returns the seed. Sealed files need the passphrase; a wrong one is a clear EPASSPHRASE error. */
export async function decodeKeyFile(text: string, passphrase: string | undefined, source = 'key file'): Promise<Uint8Array> {
  const j = parse(text, source);
  const publicKey = fromBase64Strict(j.publicKey, 32)!;
  let seed: Uint8Array | undefined;
  if (j.privateKey !== undefined) {
    seed = fromBase64Strict(j.privateKey, 32);
    if (!seed) throw bad('bad "privateKey"', source);
  } else {
    const s = j.sealed!;
    if (passphrase === undefined)
      throw new ScroogeError('EPASSPHRASE', `${source} is sealed with a passphrase`, 'pass --passphrase-file FILE (or "passphraseFile" in the config)');
    const salt = fromBase64Strict(s.salt ?? '', 16);
    const nonce = fromBase64Strict(s.nonce ?? '', 24);
    const ciphertext = fromBase64Strict(s.ciphertext ?? '', 48);
    const okParams =
      s.kdf === 'scrypt' && s.cipher === 'xchacha20-poly1305' &&
      Number.isInteger(s.N) && s.N >= 2 && s.N <= SCRYPT_MAX_N && (s.N & (s.N - 1)) === 0 &&
      Number.isInteger(s.r) && s.r >= 1 && s.r <= 32 && Number.isInteger(s.p) && s.p >= 1 && s.p <= 16;
    if (!salt || !nonce || !ciphertext || !okParams) throw bad('bad "sealed" parameters', source);
    const key = await kek(passphrase, salt, s.N, s.r, s.p);
    try {
      seed = xchacha20poly1305(key, nonce, aad(publicKey)).decrypt(ciphertext);
    } catch {
      throw new ScroogeError('EPASSPHRASE', `wrong passphrase for ${source} (or the file was altered)`);
    }
  }
  if (!bytesEqual(publicKeyFromSeed(seed), publicKey)) throw bad('"publicKey" does not match the private key', source);
  return seed;
}
