/**
 * Key files on disk: created 0600 and never overwritten by accident; loose permissions warn.
 */
import { constants, promises as fs } from 'node:fs';
import { ScroogeError } from '../errors.js';
import { decodeKeyFile, encodeKeyFile, inspectKeyFile } from '../identity/keyfile.js';
import { generateSeed, identityFromSeed, type Identity } from '../protocol/crypto.js';

export async function readPassphraseFile(path: string): Promise<string> {
  let text: string;
  try {
    text = await fs.readFile(path, 'utf8');
  } catch (err) {
    throw new ScroogeError('EPASSPHRASE', `cannot read passphrase file ${path}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  // One trailing newline is what `echo` and editors add; it is not part of the passphrase.
  return text.replace(/\r?\n$/, '');
}

/** Writes a new key file (0600). Refuses to replace an existing file unless `force`. */
export async function createKeyFile(path: string, opts: { force?: boolean; passphrase?: string } = {}): Promise<Uint8Array> {
  const seed = generateSeed();
  const text = await encodeKeyFile(seed, opts.passphrase);
  const flags = opts.force ? constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC : constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL;
  let handle;
  try {
    handle = await fs.open(path, flags, 0o600);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new ScroogeError('EEXIST', `${path} already exists`, 'pass --force to replace it (the old identity is lost)');
    throw new ScroogeError('EKEYFILE', `cannot create ${path}: ${code ?? err}`);
  }
  try {
    await handle.chmod(0o600); // O_CREAT's mode does not apply to an existing file (--force)
    await handle.writeFile(text);
  } finally {
    await handle.close();
  }
  return identityFromSeed(seed).publicKey;
}

async function readKeyText(path: string): Promise<{ text: string; mode: number }> {
  try {
    const [text, st] = await Promise.all([fs.readFile(path, 'utf8'), fs.stat(path)]);
    return { text, mode: st.mode & 0o777 };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new ScroogeError('EKEYFILE', `cannot read key file ${path}: ${code ?? err}`, code === 'ENOENT' ? 'create one with `scrooge keygen --out FILE`' : undefined);
  }
}

/** Public key of a key file, without decrypting it. */
export async function readPublicKey(path: string): Promise<Uint8Array> {
  return inspectKeyFile((await readKeyText(path)).text, path).publicKey;
}

export interface LoadedIdentity {
  identity: Identity;
  /** Set when the file is readable by group or others. */
  warning?: string;
}

export async function loadIdentity(path: string, passphrase?: string): Promise<LoadedIdentity> {
  const { text, mode } = await readKeyText(path);
  const seed = await decodeKeyFile(text, passphrase, path);
  const identity = identityFromSeed(seed);
  seed.fill(0);
  if (mode & 0o077)
    return { identity, warning: `key file ${path} is readable by others (mode ${mode.toString(8).padStart(4, '0')}); run: chmod 600 ${path}` };
  return { identity };
}
