# The plugin's root filesystem, as an image: `scripts/plugin.sh build` builds it, `docker export`s a container of it
# into build/plugin/rootfs and adds config.json (Docker's managed-plugin flow). Machines without a registry get the
# same layout from scripts/build-rootfs.sh.

# --- build: compile TypeScript, keep production dependencies only --------------------------------------------------
# One base image for both stages (the slim one has npm too): a machine that builds this pulls a single image.
FROM node:20-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
# .dockerignore lets only the sources tsconfig.build.json compiles into the context
COPY . .
RUN npm run build && npm prune --omit=dev --no-audit --no-fund --loglevel=error \
 && rm -rf node_modules/.bin node_modules/.package-lock.json

# --- runtime: node + sshfs + ssh + tini, and the app at /app -------------------------------------------------------
# The plugin's rootfs is this image flattened (docker export), so files removed here are not shipped at all: the
# package manager's caches, docs, and node's own npm/corepack/yarn, which the plugin never runs.
FROM node:20-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends sshfs openssh-client tini \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/* /var/cache/debconf/*-old /var/log/apt /var/log/dpkg.log \
    /usr/share/doc /usr/share/man /usr/share/info /usr/share/locale /usr/share/lintian \
    /usr/local/lib/node_modules /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack \
    /usr/local/bin/yarn /usr/local/bin/yarnpkg /opt/yarn-* /usr/local/include /usr/local/share/doc /usr/local/share/man \
 && mkdir -p /run/docker/plugins /mnt/volumes /mnt/state /keys /root/.ssh \
 && chmod 0700 /root /root/.ssh \
 && echo user_allow_other >> /etc/fuse.conf
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
ENV STATE_DIR=/mnt/state MOUNT_ROOT=/mnt/volumes SOCKET_PATH=/run/docker/plugins/sshfs.sock
# Same entrypoint as config.json (which is what Docker uses for the plugin).
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/node", "/app/dist/adapter/main.js"]
