export { FleetDetectors, DEFAULT_DETECTOR_OPTIONS, type DetectorOptions, type AlertDraft, type AlertKind } from './detectors.js';
export { DetectorRunner, detectorCursorName, ALERTS_STREAM, type DetectorRunnerOptions } from './detector-runner.js';
