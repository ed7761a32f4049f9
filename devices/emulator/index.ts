export { ReeferFleet, seededRandom, type ReeferFleetOptions, type ReeferReading } from './reefer-fleet.js';
export { FleetEmulator, type FleetEmulatorOptions, type FleetStats } from './fleet-emulator.js';
export { FleetShard, type ShardOptions, type ShardStats } from './fleet-shard.js';
