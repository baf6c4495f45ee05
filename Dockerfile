# The plugin's root filesystem, as an image: `scripts/plugin.sh build` builds it, `docker export`s a container of it
# into build/plugin/rootfs and adds config.json (Docker's managed-plugin flow). Machines without a registry get the
# same layout from scripts/build-rootfs.sh.

# --- build: compile TypeScript, keep production dependencies only --------------------------------------------------
FROM node:20 AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
# .dockerignore lets only the sources tsconfig.build.json compiles into the context
COPY . .
RUN npm run build && npm prune --omit=dev --no-audit --no-fund

# --- runtime: node + sshfs + ssh + tini, and the app at /app -------------------------------------------------------
FROM node:20-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends sshfs openssh-client tini ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
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
