export { startSite, type RunningSite, type SiteStats, type StartSiteOptions } from './site.js';
export {
  loadSiteConfig,
  parseSiteConfig,
  applyEnvOverrides,
  siteConfigSchema,
  DEFAULT_TOPIC_RULES,
  DEFAULT_STREAM_PRIORITY,
  type SiteConfig,
  type SiteConfigInput,
} from './config.js';
