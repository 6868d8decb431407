# Ambit's one image: ambit-control, ambit-agent and ambit-cni are entry points of the same build.
# The base is Debian bookworm with Node.js; the local cluster builds it under this name without a
# registry (see test/cluster/runtime), so this file builds unmodified with buildah --pull=never.
FROM localhost/ambit-base:bookworm
WORKDIR /opt/ambit
COPY package.json package-lock.json ./
COPY node_modules ./node_modules
COPY dist/src ./dist/src
# Compiled native helpers (the static CNI shim the agent installs on nodes); may be empty.
COPY dist/native ./dist/native
ENV NODE_ENV=production
ENTRYPOINT ["node"]
