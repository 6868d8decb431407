/** IntOrString values of rollout parameters ("25%" or 1) scaled against a replica count. */

/**
 * intstr.GetScaledValueFromIntOrPercent: a percentage of `total`, rounded up or down; an integer
 * as is. Throws on a malformed percentage, as the real helper returns an error.
 */
export function scaledValue(v: number | string | undefined, total: number, roundUp: boolean, dflt: number | string): number {
  const val = v ?? dflt;
  if (typeof val === 'number') return val;
  const m = /^(\d+)%$/.exec(val);
  if (!m) {
    const n = Number(val);
    if (Number.isInteger(n)) return n;
    throw new Error(`invalid value for IntOrString: invalid value ${JSON.stringify(val)}`);
  }
  const pct = Number(m[1]);
  const raw = (pct * total) / 100;
  return roundUp ? Math.ceil(raw) : Math.floor(raw);
}
