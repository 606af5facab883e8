# One image for the api, the worker and the one-shot bootstrap (migrations + default workspace).
FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
# Generating the client needs no schema engine (scripts/prisma.js); migrations use our own runner.
RUN node scripts/prisma.js generate \
 && npx tsc -p tsconfig.build.json \
 && node dist/src/temporal/bundle.js \
 && npm prune --omit=dev

FROM node:24-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production DATA_DIR=/data
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/prisma ./prisma
RUN mkdir -p /data && chown node:node /data
USER node
EXPOSE 8080
CMD ["node", "dist/src/main.js"]
