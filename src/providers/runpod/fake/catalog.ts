/**
 * A handful of serverless GPU types and their pools (providers-api.md §1.5 "GPU type → pool" and the
 * §1.9 per-second list prices; `price.serverless` is per GPU-hour as GET /v2/catalog/gpus reports it).
 */
export interface GpuTypeEntry {
  id: string;
  name: string;
  pool: string;
  memory: number;
  perSecond: number;
}

export const GPU_TYPES: GpuTypeEntry[] = [
  { id: 'NVIDIA H100 80GB HBM3', name: 'H100 SXM', pool: 'ADA_80_PRO', memory: 80, perSecond: 0.00116 },
  { id: 'NVIDIA H100 PCIe', name: 'H100 PCIe', pool: 'ADA_80_PRO', memory: 80, perSecond: 0.00116 },
  { id: 'NVIDIA H100 NVL', name: 'H100 NVL', pool: 'ADA_80_PRO', memory: 94, perSecond: 0.00116 },
  { id: 'NVIDIA H200', name: 'H200 SXM', pool: 'HOPPER_141', memory: 141, perSecond: 0.00155 },
  { id: 'NVIDIA A100 80GB PCIe', name: 'A100 PCIe', pool: 'AMPERE_80', memory: 80, perSecond: 0.00076 },
  { id: 'NVIDIA A100-SXM4-80GB', name: 'A100 SXM', pool: 'AMPERE_80', memory: 80, perSecond: 0.00076 },
  { id: 'NVIDIA L40S', name: 'L40S', pool: 'ADA_48_PRO', memory: 48, perSecond: 0.00053 },
  { id: 'NVIDIA L40', name: 'L40', pool: 'ADA_48_PRO', memory: 48, perSecond: 0.00053 },
  { id: 'NVIDIA RTX 6000 Ada Generation', name: 'RTX 6000 Ada', pool: 'ADA_48_PRO', memory: 48, perSecond: 0.00053 },
  { id: 'NVIDIA RTX A6000', name: 'RTX A6000', pool: 'AMPERE_48', memory: 48, perSecond: 0.00034 },
  { id: 'NVIDIA A40', name: 'A40', pool: 'AMPERE_48', memory: 48, perSecond: 0.00034 },
  { id: 'NVIDIA GeForce RTX 4090', name: 'RTX 4090', pool: 'ADA_24', memory: 24, perSecond: 0.00031 },
  { id: 'NVIDIA L4', name: 'L4', pool: 'AMPERE_24', memory: 24, perSecond: 0.00019 },
  { id: 'NVIDIA RTX A5000', name: 'RTX A5000', pool: 'AMPERE_24', memory: 24, perSecond: 0.00019 },
  { id: 'NVIDIA GeForce RTX 3090', name: 'RTX 3090', pool: 'AMPERE_24', memory: 24, perSecond: 0.00019 },
  { id: 'NVIDIA RTX A4000', name: 'RTX A4000', pool: 'AMPERE_16', memory: 16, perSecond: 0.00016 },
  { id: 'NVIDIA RTX A4500', name: 'RTX A4500', pool: 'AMPERE_16', memory: 16, perSecond: 0.00016 },
];

export const POOLS = new Set(GPU_TYPES.map((g) => g.pool));

export const typesOfPool = (pool: string) => GPU_TYPES.filter((g) => g.pool === pool).map((g) => g.id);

/** The catalog entries as `GET /v2/catalog/gpus` returns them; availability only when asked for. */
export function catalogGpus(withAvailability: boolean, exhausted: Set<string>): unknown[] {
  return GPU_TYPES.map((g) => {
    const out: Record<string, unknown> = {
      id: g.id,
      name: g.name,
      pool: g.pool,
      manufacturer: 'NVIDIA',
      memory: g.memory,
      secure: true,
      community: g.memory <= 48,
      price: {
        secure: Math.round(g.perSecond * 3600 * 0.8 * 100) / 100,
        community: Math.round(g.perSecond * 3600 * 0.6 * 100) / 100,
        serverless: Math.round(g.perSecond * 3600 * 10000) / 10000,
      },
      maxCount: { secure: 8, community: g.memory <= 48 ? 4 : 0 },
    };
    if (withAvailability) {
      const none = exhausted.has(g.pool);
      out.availability = none ? 'NONE' : 'HIGH';
      if (!none) out.dataCenters = [{ id: 'US-KS-2', name: 'US-KS-2', availability: 'HIGH' }];
    }
    return out;
  });
}
