export { VehicleModel, VehicleSpecError, SYDNEY_MELBOURNE_ROAD, SYDNEY_PARKES_RAIL, type VehicleSpec, type VehicleContainer, type VehicleMessage, type VehiclePosition, type Waypoint } from './vehicle-model.js';
export { VehicleEmulator, type VehicleEmulatorOptions, type VehicleStats } from './vehicle-emulator.js';
