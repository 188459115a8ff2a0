/** `scrooge keygen` and `scrooge pubkey`: the node's identity key. */
import { UsageError } from '../../errors.js';
import { toBase64 } from '../../protocol/bytes.js';
import { createKeyFile, loadIdentity, readPassphraseFile, readPublicKey } from '../../system/keystore.js';
import { type Command, parseCommandLine, printJson } from '../command.js';

export const keygen: Command = {
  name: 'keygen',
  summary: 'write a new identity key',
  usage: `usage: scrooge keygen --out FILE [--force] [--passphrase-file FILE] [--json]

Writes a new ed25519 identity key to FILE (mode 0600) and prints its public key.
  --out FILE              where to write the key (refuses to overwrite an existing file)
  --force                 replace FILE if it exists (the old identity is lost)
  --passphrase-file FILE  seal the key with the passphrase in FILE (scrypt + XChaCha20-Poly1305)
  --json                  print {"publicKey": ..., "file": ...}
`,
  async run(args, io) {
    const { values } = parseCommandLine(
      args,
      { out: { type: 'string' }, force: { type: 'boolean' }, 'passphrase-file': { type: 'string' }, json: { type: 'boolean' } },
      { max: 0 },
    );
    if (!values.out) throw new UsageError('--out FILE is required');
    const passphrase = values['passphrase-file'] ? await readPassphraseFile(values['passphrase-file']) : undefined;
    const publicKey = await createKeyFile(values.out, { force: !!values.force, ...(passphrase !== undefined ? { passphrase } : {}) });
    if (values.json) printJson(io, { publicKey: toBase64(publicKey), file: values.out, sealed: passphrase !== undefined });
    else io.out(toBase64(publicKey) + '\n');
    return 0;
  },
};

export const pubkey: Command = {
  name: 'pubkey',
  summary: "print a key file's public key",
  usage: `usage: scrooge pubkey --key FILE [--passphrase-file FILE] [--json]

Prints the base64 public key of an identity key file. With --passphrase-file the sealed
private key is also opened, which checks the passphrase.
`,
  async run(args, io) {
    const { values } = parseCommandLine(
      args,
      { key: { type: 'string' }, 'passphrase-file': { type: 'string' }, json: { type: 'boolean' } },
      { max: 0 },
    );
    if (!values.key) throw new UsageError('--key FILE is required');
    let publicKey: Uint8Array;
    if (values['passphrase-file']) {
      const loaded = await loadIdentity(values.key, await readPassphraseFile(values['passphrase-file']));
      if (loaded.warning) io.err(`scrooge: warning: ${loaded.warning}\n`);
      publicKey = loaded.identity.publicKey;
    } else {
      publicKey = await readPublicKey(values.key);
    }
    if (values.json) printJson(io, { publicKey: toBase64(publicKey) });
    else io.out(toBase64(publicKey) + '\n');
    return 0;
  },
};
