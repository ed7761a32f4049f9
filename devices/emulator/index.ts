export { ReeferFleet, seededRandom, type ReeferFleetOptions, type ReeferReading } from './reefer-fleet.js';
