// The plugin as Podman 5's volume plugin (Debian 13's podman, run in scripts/trixie-env.sh's namespace with the host-
// mode plugin there): the same tests as on Debian 12's Podman 4.3 (test/e2e/podman-suite.ts).
import { describePodman } from '../e2e/podman-suite.js';
import { startTrixiePlugin, trixie } from './trixie-env.js';

describePodman({
  label: 'Podman 5.4',
  prefix: [trixie.inNs()],
  version: '5.4.',
  // Podman 5's default runtime, crun, refuses these machines' cgroup v1 hybrid mode; runc works.
  engineConf: ['runtime = "runc"'],
  startPlugin: () => startTrixiePlugin(),
  mountsFile: trixie.mountsFile(),
});
