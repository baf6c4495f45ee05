# The plugin's root filesystem, as an image: `scripts/plugin.sh build` builds it, `docker export`s a container of it
# into build/plugin/rootfs and adds config.json (Docker's managed-plugin flow). Machines without a registry get the
# same layout from scripts/build-rootfs.sh, which the assemble stage below runs too.

# --- build: compile TypeScript, keep production dependencies only --------------------------------------------------
# One base image for all stages (the slim one has npm too): a machine that builds this pulls a single image.
FROM node:20-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
# .dockerignore lets only the sources tsconfig.build.json compiles, config.json and build-rootfs.sh (with the
# scripts/lib/apt.sh and prod-deps.sh it sources) into the context
COPY . .
RUN npm run build && npm prune --omit=dev --no-audit --no-fund --loglevel=error

# --- assemble: node, sshfs, ssh, fusermount3, tini, only the libraries they load, and the app ----------------------
# scripts/build-rootfs.sh is the offline builder: run here on Debian's packages, it gives the same small rootfs
# (no shell, no package manager, no npm), and checks that each program starts inside it.
FROM node:20-slim AS assemble
RUN apt-get update \
 && apt-get install -y --no-install-recommends sshfs openssh-client fuse3 tini \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src /src
RUN APP_DIR=/src CONFIG=/src/config.json bash /src/scripts/build-rootfs.sh /out

# --- the plugin's rootfs ---------------------------------------------------------------------------------------------
FROM scratch
COPY --from=assemble /out/rootfs/ /
WORKDIR /app
ENV STATE_DIR=/mnt/state MOUNT_ROOT=/mnt/volumes SOCKET_PATH=/run/docker/plugins/sshfs.sock
# Same entrypoint as config.json (which is what Docker uses for the plugin).
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/node", "/app/dist/adapter/main.js"]
