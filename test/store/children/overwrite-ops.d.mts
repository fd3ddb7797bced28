export interface OverwriteOp {
  kind: 'create' | 'write' | 'truncate';
  file: string;
  offset: number;
  length: number;
  fill: number;
  size: number;
}
export function overwriteOps(seed: number, count: number): OverwriteOp[];
