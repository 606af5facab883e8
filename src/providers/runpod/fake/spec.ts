import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import Ajv2020, { ErrorObject, ValidateFunction } from 'ajv/dist/2020';
import addFormats from 'ajv-formats';

const SPEC_FILE = 'runpod-v2-openapi.json';
const SPEC_ID = 'https://api.runpod.io/v2/openapi.json';

/**
 * The vendored OpenAPI document (runpod/docs api-reference-v2/openapi.json). It sits beside this file
 * when run from src/ (jest); the compiled dist/ tree does not carry it, so from there walk up to the
 * package root and read it from src/.
 */
export function specPath(): string {
  const beside = join(__dirname, SPEC_FILE);
  if (existsSync(beside)) return beside;
  for (let dir = __dirname; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) {
      const p = join(dir, 'src/providers/runpod/fake', SPEC_FILE);
      if (existsSync(p)) return p;
    }
    if (dirname(dir) === dir) throw new Error(`${SPEC_FILE} not found from ${__dirname}`);
  }
}

export type OpenApiDoc = {
  paths: Record<string, Record<string, { requestBody?: { content?: Record<string, { examples?: Record<string, { value: unknown }> }> } }>>;
  components: { schemas: Record<string, unknown> };
};

/**
 * ajv 8 loses the evaluated properties of an `allOf` when a sibling `if` at the same level fails, so a valid
 * CreateEndpointRequest would read as all-unevaluated. Moving `if`/`then`/`else` into the `allOf` as one more
 * member is equivalent in JSON Schema 2020-12 and sidesteps it; the schemas are otherwise used as published.
 */
function hoistConditionals(node: unknown): void {
  if (Array.isArray(node)) return node.forEach(hoistConditionals);
  if (!node || typeof node !== 'object') return;
  const o = node as Record<string, unknown>;
  if ('if' in o && Array.isArray(o.allOf)) {
    const cond: Record<string, unknown> = {};
    for (const k of ['if', 'then', 'else']) {
      if (k in o) {
        cond[k] = o[k];
        delete o[k];
      }
    }
    o.allOf.push(cond);
  }
  Object.values(o).forEach(hoistConditionals);
}

let cached: { doc: OpenApiDoc; create: ValidateFunction; update: ValidateFunction } | null = null;

function load() {
  if (cached) return cached;
  const doc = JSON.parse(readFileSync(specPath(), 'utf8')) as OpenApiDoc;
  const ajv = new Ajv2020({ strict: false, allErrors: true, logger: false, validateFormats: true });
  addFormats(ajv);
  // The spec uses OpenAPI's "float"/"double"/"int32"/"int64" formats; they carry no extra constraint.
  for (const f of ['float', 'double', 'int32', 'int64']) ajv.addFormat(f, true);
  const components = structuredClone(doc.components);
  hoistConditionals(components);
  ajv.addSchema({ $id: SPEC_ID, components });
  const get = (name: string) => {
    const v = ajv.getSchema(`${SPEC_ID}#/components/schemas/${name}`);
    if (!v) throw new Error(`schema ${name} missing from ${SPEC_FILE}`);
    return v;
  };
  cached = { doc, create: get('CreateEndpointRequest'), update: get('UpdateEndpointRequest') };
  return cached;
}

export function openApiDoc(): OpenApiDoc {
  return load().doc;
}

/** `$.a.b[0]` from ajv's `/a/b/0`. */
function jsonPath(instancePath: string): string {
  return (
    '$' +
    instancePath
      .split('/')
      .slice(1)
      .map((s) => (/^\d+$/.test(s) ? `[${s}]` : `.${s.replace(/~1/g, '/').replace(/~0/g, '~')}`))
      .join('')
  );
}

/** One line per ajv error, shaped like the spec's example `"$: additional properties 'bogus' not allowed"`. */
function messages(errors: ErrorObject[] | null | undefined): string[] {
  const out = new Set<string>();
  for (const e of errors ?? []) {
    // The branches of a failed oneOf/allOf/if are already reported one by one.
    if (e.keyword === 'if' || e.keyword === 'oneOf' || e.keyword === 'anyOf') continue;
    const at = jsonPath(e.instancePath);
    if (e.keyword === 'unevaluatedProperties' || e.keyword === 'additionalProperties') {
      const p =
        (e.params as { unevaluatedProperty?: string; additionalProperty?: string }).unevaluatedProperty ?? e.params.additionalProperty;
      out.add(`${at}: additional properties '${String(p)}' not allowed`);
    } else if (e.keyword === 'enum') {
      out.add(
        `${at}: ${e.message ?? 'invalid'}: ${(e.params as { allowedValues: unknown[] }).allowedValues.map((v) => JSON.stringify(v)).join(', ')}`,
      );
    } else out.add(`${at}: ${e.message ?? 'invalid'}`);
  }
  return [...out];
}

/** Errors of a createEndpoint body against the spec's CreateEndpointRequest, or null when it is valid. */
export function validateCreate(body: unknown): string[] | null {
  const v = load().create;
  return v(body) ? null : messages(v.errors);
}

/** Errors of an updateEndpoint body against the spec's UpdateEndpointRequest, or null when it is valid. */
export function validateUpdate(body: unknown): string[] | null {
  const v = load().update;
  return v(body) ? null : messages(v.errors);
}

/** The request-body examples the spec gives for an operation (for contract tests). */
export function requestExamples(path: string, method: string): Record<string, unknown> {
  const content = openApiDoc().paths[path]?.[method]?.requestBody?.content ?? {};
  const out: Record<string, unknown> = {};
  for (const media of Object.values(content)) for (const [name, ex] of Object.entries(media.examples ?? {})) out[name] = ex.value;
  return out;
}
