export { FleetModel, type FleetMessage, type FleetModelOptions, type MessageKind } from './fleet-model.js';
export { parseScenario, loadScenarioFile, voyageScenario, expandIds, scenarioSchema, linkStateOf, ScenarioError, type Scenario, type ScenarioInput, type When, type LinkWindow } from './scenario.js';
export { buildTimeline, ShipTimeline, type VoyageTimeline, type ContainerPlan, type ContainerMove, type PortCall, type Leg, type ShipWhereabouts } from './timeline.js';
export { Random, mulberry32, streamSeed, roundTo } from './random.js';
