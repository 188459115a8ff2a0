export * from './address.js';
export * from './bytes.js';
export * from './constants.js';
export * from './crypto.js';
export * from './messages.js';
export * from './sequence.js';
