import type { Scenario } from './harness.js';
import { thinPathScenario } from './scenarios/thin-path.js';
import { logScenario } from './scenarios/log.js';
import { shoreKafkaScenario } from './scenarios/shore-kafka.js';
import { ingestScenario } from './scenarios/ingest.js';
import { uplinkScenario } from './scenarios/uplink.js';
import { devicesScenario } from './scenarios/devices.js';
import { portalScenario } from './scenarios/portal.js';
import { customerLinkScenario } from './scenarios/customer-link.js';

export { choiceFromEnvironment, formatTable, formatJsonLines, optionalWholeNumberFromEnvironment, wholeNumberFromEnvironment, type Figure, type Scenario, type BenchContext } from './harness.js';

/** Every named scenario `portcall bench` knows, in the order `all` runs them. */
export const SCENARIOS: readonly Scenario[] = [thinPathScenario, logScenario, ingestScenario, shoreKafkaScenario, uplinkScenario, devicesScenario, portalScenario, customerLinkScenario];
