/**
 * The newest 3.9.x release that resolves on Maven Central. The project stays on the 3.9 line
 * because 4.0 removed old protocol API versions (KIP-896) and kafkajs 2.x, which is no longer
 * maintained, was never tested against it; 3.9 also still runs on JDK 11.
 */
export const KAFKA_VERSION = '3.9.2';

/** Scala build of the broker jar; 2.12 is deprecated in 3.x and gone in 4.0. */
export const KAFKA_SCALA_VERSION = '2.13';

/** The slf4j 1.7 binding and log4j 1.x fork that the official 3.9 tarball ships in libs/. */
export const SLF4J_VERSION = '1.7.36';
export const RELOAD4J_VERSION = '1.2.25';

/** Pinned so a fresh ~/.m2 does not resolve whatever old default the Maven install has. */
export const MAVEN_DEPENDENCY_PLUGIN = 'org.apache.maven.plugins:maven-dependency-plugin:3.8.1';
