// Named crash points for tests: BRICKD_CRASH_POINT="<name>[:<n>]" makes the process SIGKILL
// itself the n-th time (default 1st) it passes the named point in the write path. Unset in
// production, where `crashPoint` is undefined and costs nothing.
export type CrashPoint = (name: string) => void;

export function crashPointFromEnv(env: NodeJS.ProcessEnv = process.env): CrashPoint | undefined {
  const spec = env.BRICKD_CRASH_POINT;
  if (!spec) return undefined;
  const [name, countText] = spec.split(':');
  let remaining = countText ? Number(countText) : 1;
  return (point) => {
    if (point === name && --remaining === 0) process.kill(process.pid, 'SIGKILL');
  };
}
