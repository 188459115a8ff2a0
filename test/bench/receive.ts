/**
 * Receive-path benchmark (issue: foundation, "Speed"): decode + replay check + rate limit +
 * strict verify of valid hellos from 100 distinct senders, in messages/s, next to a bare
 * ed25519 verify through node:crypto over the same messages in the same run.
 * Single-threaded (one core). Usage: npm run bench [-- --json] [-- --seconds N] [-- --v8-flags F]
 * Both run under the V8 flags the agent sets for itself (AGENT_V8_FLAGS; --v8-flags "" for
 * V8's defaults), so the figure is the agent's.
 */
import { createPublicKey, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { AGENT_V8_FLAGS } from '../../src/config/tunables.js';
import { Admission } from '../../src/neighbors/admission.js';
import { ReplayMemory } from '../../src/neighbors/replay.js';
import { concatBytes, decodeMessage, encodeMessage, identityFromSeed, toBase64, Verifier } from '../../src/protocol/index.js';

const { values } = parseArgs({ options: { json: { type: 'boolean' }, seconds: { type: 'string', default: '2' }, 'v8-flags': { type: 'string', default: AGENT_V8_FLAGS } } });
const v8Flags = values['v8-flags'].split(/\s+/).filter(Boolean);
for (const flag of v8Flags) setFlagsFromString(flag);
const seconds = Number(values.seconds);
const SENDERS = 100;
const PER_SENDER = 400;

const me = identityFromSeed(new Uint8Array(32).fill(0xee));
const senders = Array.from({ length: SENDERS }, (_, i) => identityFromSeed(new Uint8Array(32).fill(i + 1)));
// Round-robin order, increasing seq per sender: every message is fresh exactly once.
const datagrams: { bytes: Uint8Array; source: { address: string; iface: string } }[] = [];
for (let n = 0; n < PER_SENDER; n++) {
  for (let i = 0; i < SENDERS; i++) {
    const s = senders[i]!;
    const { bytes } = encodeMessage(
      { type: 'scrooge_hello', publicKey: s.publicKey, control: { address: `fe80::${i + 1}`, zone: 'eth0', port: 51819 }, seq: BigInt(n + 1) },
      s.sign,
    );
    datagrams.push({ bytes, source: { address: `fe80::${i + 1}`, iface: 'eth0' } });
  }
}

function receivePath(): number {
  const unlimited = { rate: 1e12, burst: 1e12 };
  const admission = new Admission(
    {
      ownKey: me.publicKey,
      replay: new ReplayMemory(),
      verifier: new Verifier(),
      // All senders are known neighbors heard from their source: the common case.
      table: { knownSource: (k) => sourceByKey.get(k), isFull: () => false },
    },
    { neighbor: unlimited, source: unlimited, strangers: unlimited },
  );
  let accepted = 0;
  for (const d of datagrams) if (admission.admit(d.bytes, d.source, 0).ok) accepted++;
  if (accepted !== datagrams.length) throw new Error(`only ${accepted} of ${datagrams.length} accepted`);
  return datagrams.length;
}
const sourceByKey = new Map(senders.map((s, i) => [toBase64(s.publicKey), `fe80::${i + 1}%eth0`]));

// Bare verify: pre-parsed key objects, pre-built signed bytes, nothing else.
const SPKI = Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]);
const keyObjects: KeyObject[] = senders.map((s) => createPublicKey({ key: Buffer.from(concatBytes([SPKI, s.publicKey])), format: 'der', type: 'spki' }));
const bare = datagrams.map((d, idx) => {
  const r = decodeMessage(d.bytes);
  if (!r.ok) throw new Error('bad datagram');
  return { key: keyObjects[idx % SENDERS]!, data: r.signedBytes, sig: r.signature };
});
function bareVerify(): number {
  for (const b of bare) if (!nodeVerify(null, b.data, b.key, b.sig)) throw new Error('verify failed');
  return bare.length;
}

function rate(fn: () => number): number {
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < seconds * 1000) n += fn();
  return n / ((performance.now() - start) / 1000);
}

receivePath();
bareVerify(); // warm up both
const results = { receivePath: [] as number[], bareVerify: [] as number[] };
for (let round = 0; round < 3; round++) {
  results.receivePath.push(rate(receivePath));
  results.bareVerify.push(rate(bareVerify));
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const out = {
  senders: SENDERS,
  messagesPerRound: datagrams.length,
  secondsPerMeasurement: seconds,
  receivePathPerSecond: Math.round(median(results.receivePath)),
  bareNodeVerifyPerSecond: Math.round(median(results.bareVerify)),
  ratio: Number((median(results.receivePath) / median(results.bareVerify)).toFixed(3)),
  targets: { receivePathPerSecond: 10000, ratio: 0.7 },
  node: process.version,
  v8Flags,
};
if (values.json) console.log(JSON.stringify(out, null, 2));
else {
  console.log(`receive path (decode + replay + verify), ${SENDERS} senders: ${out.receivePathPerSecond} hellos/s`);
  console.log(`bare node:crypto ed25519 verify:                    ${out.bareNodeVerifyPerSecond} verifies/s`);
  console.log(`ratio: ${out.ratio} (targets: >= 10000/s and >= 0.7); V8 flags: ${v8Flags.join(' ') || 'none'}`);
}
