// Reading interfaces' link-local addresses from /proc/net/if_inet6 (src/system/netif.ts).
import { describe, expect, it } from 'vitest';
import { linkLocalsFromProc } from '../../src/system/netif.js';

describe('/proc/net/if_inet6', () => {
  it('gives each interface its first fe80::/10 address, canonical; others are ignored', () => {
    const text = [
      'fe8000000000000000fc00fffe000001 04 40 20 80     eth0',
      'fd000000000000000000000000000002 04 40 00 82     eth0',
      'fe800000000000000000000000000009 04 40 20 80     eth0',
      'febf0000000000000000000000000001 05 40 20 80  sc0123456789abc',
      '00000000000000000000000000000001 01 80 10 80       lo',
      'garbage',
      '',
    ].join('\n');
    expect([...linkLocalsFromProc(text)]).toEqual([['eth0', 'fe80::fc:ff:fe00:1'], ['sc0123456789abc', 'febf::1']]);
    // The agent asks for its mesh interfaces only: the tunnels' lines are skipped unparsed.
    expect([...linkLocalsFromProc(text, new Set(['eth0']))]).toEqual([['eth0', 'fe80::fc:ff:fe00:1']]);
    expect([...linkLocalsFromProc(text, new Set(['wlan0']))]).toEqual([]);
  });
});
