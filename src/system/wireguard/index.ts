/**
 * WireGuard for the agent: the backends (kernel module, wireguard-go), the detection that picks
 * one, and the pure text formats they read and write (text.ts, under the boundary test).
 */
export type { ApplyOutcome, BackendKind, WireGuardBackend, WireGuardHost } from './backend.js';
export { detectBackend, INOTIFY_INSTANCES_WANTED } from './detect.js';
export { udpPortFree } from './host.js';
export { KernelBackend, kernelHost, type KernelHost } from './kernel.js';
export { parseUapi, parseWgDump, uapiSet, wgConfig, linkCommands, type LiveTunnel, type PeerStats } from './text.js';
export { USERSPACE_SOCKET_DIR, UserspaceBackend, userspaceHost, type UserspaceHost } from './userspace.js';
