/** `scrooge demo`: the embedded default (README's first command). */
import { x25519 } from '@noble/curves/ed25519.js';
import { decodeMessage, encodeMessage, generateSeed, identityFromSeed, toBase64, Verifier } from '../../protocol/index.js';
import { type Command, parseCommandLine } from '../command.js';

export const demo: Command = {
  name: 'demo',
  summary: 'run the demo mesh',
  usage: `usage: scrooge demo\n\nRuns the protocol self-check (the simulated mesh demo comes with the sim harness).\n`,
  async run(args, io) {
    parseCommandLine(args, {}, { max: 0 });
    const a = identityFromSeed(generateSeed());
    const b = identityFromSeed(generateSeed());
    const verifier = new Verifier();
    const steps = [
      { type: 'scrooge_hello' as const, publicKey: a.publicKey, control: { address: 'fe80::a', zone: 'eth0', port: 51819 }, seq: 1n },
      { type: 'scrooge_hello_confirm' as const, publicKey: b.publicKey, recipient: a.publicKey, control: { address: 'fe80::b', zone: 'eth0', port: 51819 }, seq: 1n },
      { type: 'scrooge_tunnel' as const, publicKey: a.publicKey, recipient: b.publicKey, tunnelKey: x25519.keygen().publicKey, endpoint: { address: 'fe80::a', zone: 'eth0', port: 51820 }, seq: 2n },
    ];
    for (const m of steps) {
      const signer = m.publicKey === a.publicKey ? a : b;
      const { text, bytes } = encodeMessage(m, signer.sign);
      const d = decodeMessage(bytes);
      const ok = d.ok && verifier.verify(toBase64(m.publicKey), m.publicKey, d.signedBytes, d.signature);
      io.out(`${ok ? 'ok  ' : 'FAIL'} ${text}\n`);
      if (!ok) return 1;
    }
    io.out('protocol self-check passed; the simulated mesh demo is coming with `scrooge sim`.\n');
    return 0;
  },
};
