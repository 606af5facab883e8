// The deployment vocabulary shared by the api, the gateway, the worker and workflows. Pure.
// src/graphql/enums.ts checks these against the Prisma enums once, at compile time.

export const TARGETS = ['LOCAL', 'RUNPOD', 'MODAL', 'CUSTOM'] as const;
export type Target = (typeof TARGETS)[number];

export const MODES = ['FLEX', 'ACTIVE'] as const;
export type Mode = (typeof MODES)[number];

export const TASKS = ['CHAT', 'EMBEDDINGS', 'IMAGE', 'AUDIO'] as const;
export type Task = (typeof TASKS)[number];
