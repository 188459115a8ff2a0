/**
 * Constants of the protocol itself (PROTOCOL.md): every implementation uses the same values.
 * The codec's own (version, datagram bound, message names) are in messages.ts. Tunables, which
 * an operator may change, are in src/config/tunables.ts.
 */

/** Discovery and control UDP port (PROTOCOL.md §1). */
export const PROTOCOL_PORT = 51819;
/** Link-local multicast group for hellos: IANA "any private experiment" (RFC 4727). */
export const HELLO_GROUP = 'ff02::114';
/** WireGuard's REJECT-AFTER-TIME: a session older than this cannot carry data (PROTOCOL.md §6). */
export const WIREGUARD_REJECT_AFTER_MS = 180_000;
