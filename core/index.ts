export * from './record.js';
export * from './errors.js';
export * from './site-log.js';
export * from './health.js';
export * from './access.js';
export * from './scrypt-hash.js';
export * from './rate-limit.js';
export * from './yaml-text.js';
