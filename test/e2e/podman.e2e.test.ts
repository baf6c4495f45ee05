// The plugin as Podman's volume plugin on this machine's Podman: Debian 12's 4.3 (test/e2e/podman-suite.ts holds the
// tests; test/trixie/podman5.trixie.test.ts runs them on Debian 13's Podman 5).
import { startLegacyPlugin } from './harness.js';
import { describePodman } from './podman-suite.js';

describePodman({ label: 'Podman 4.3', prefix: [], version: '4.3.', engineConf: [], startPlugin: () => startLegacyPlugin() });
