// The pure parts of the WireGuard backends: what we send wireguard-go (UAPI set) and how we
// read what the kernel (`wg show all dump`) and wireguard-go (UAPI get) answer.
import { describe, expect, it } from 'vitest';
import type { TunnelIntent } from '../../src/neighbors/core.js';
import { parseUapi, parseWgDump, uapiSet } from '../../src/system/wireguard/text.js';
import { userspaceTimeouts } from '../../src/system/wireguard/userspace.js';

const key = (b: number) => new Uint8Array(32).fill(b);
const hex = (b: number) => Buffer.from(key(b)).toString('hex');
const b64 = (b: number) => Buffer.from(key(b)).toString('base64');

const intent: TunnelIntent = {
  ifname: 'sc0123456789abc', neighbor: b64(9), generation: 3, privateKey: key(1), publicKey: key(2), listenPort: 51821,
  address: 'fe80::1', mtu: 1420, peer: { tunnelKey: key(3), endpoint: { address: 'fe80::2', zone: 'eth0', port: 51820 }, keepaliveSeconds: 5 },
};

describe('wireguard-go UAPI', () => {
  it('a set request carries the key in hex, replaces the peer, and ends with a blank line', () => {
    expect(uapiSet(intent)).toBe([
      'set=1', `private_key=${hex(1)}`, 'listen_port=51821', 'replace_peers=true',
      `public_key=${hex(3)}`, 'endpoint=[fe80::2%eth0]:51820', 'persistent_keepalive_interval=5',
      'replace_allowed_ips=true', 'allowed_ip=::/0', 'allowed_ip=0.0.0.0/0', '', '',
    ].join('\n'));
    expect(uapiSet({ ...intent, peer: undefined })).toBe(`set=1\nprivate_key=${hex(1)}\nlisten_port=51821\nreplace_peers=true\n\n`);
  });

  it('parses a get answer: key, port, peer, endpoint, handshake time, counters', () => {
    const t = parseUapi([
      `private_key=${hex(1)}`, 'listen_port=51821', `public_key=${hex(3)}`, 'endpoint=[fe80::2]:51820',
      'last_handshake_time_sec=1700000000', 'last_handshake_time_nsec=500000000', 'rx_bytes=1234', 'tx_bytes=5678',
      'persistent_keepalive_interval=5', 'allowed_ip=::/0', 'errno=0', '', '',
    ].join('\n'));
    expect(t).toEqual({
      privateKey: key(1), listenPort: 51821,
      peer: { publicKey: key(3), endpoint: { address: 'fe80::2', port: 51820 }, stats: { latestHandshakeMs: 1_700_000_000_500, rxBytes: 1234, txBytes: 5678 } },
    });
  });

  it('an error answer or an interface without a key is nothing', () => {
    expect(parseUapi('errno=1\n\n')).toBeUndefined();
    expect(parseUapi('listen_port=1\nerrno=0\n\n')).toBeUndefined();
  });
});

describe('wg show all dump', () => {
  it('parses interfaces and their peers by interface name', () => {
    const dump = [
      ['sc0123456789abc', b64(1), b64(2), '51821', 'off'].join('\t'),
      ['sc0123456789abc', b64(3), '(none)', '[fe80::2%eth0]:51820', '::/0,0.0.0.0/0', '1700000000', '10', '20', '5'].join('\t'),
      ['scfedcba9876543', b64(4), b64(5), '51822', 'off'].join('\t'),
      '',
    ].join('\n');
    const m = parseWgDump(dump, true);
    expect([...m.keys()]).toEqual(['sc0123456789abc', 'scfedcba9876543']);
    expect(m.get('sc0123456789abc')).toEqual({
      privateKey: key(1), listenPort: 51821,
      peer: { publicKey: key(3), endpoint: { address: 'fe80::2', zone: 'eth0', port: 51820 }, stats: { latestHandshakeMs: 1_700_000_000_000, rxBytes: 10, txBytes: 20 } },
    });
    expect(m.get('scfedcba9876543')!.peer).toBeUndefined();
  });
});

describe('wireguard-go time budgets', () => {
  it('are 15 s to start and 10 s per UAPI exchange at the default commandTimeout, and grow with a larger one', () => {
    expect(userspaceTimeouts(10_000)).toEqual({ startMs: 15_000, uapiMs: 10_000 });
    expect(userspaceTimeouts(0)).toEqual({ startMs: 15_000, uapiMs: 10_000 });
    expect(userspaceTimeouts(1000)).toEqual({ startMs: 15_000, uapiMs: 10_000 });
    expect(userspaceTimeouts(120_000)).toEqual({ startMs: 180_000, uapiMs: 120_000 });
  });
});
