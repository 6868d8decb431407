/**
 * Allocators for Service ClusterIPs (from the service CIDR) and NodePorts, with the real server's
 * error messages for taken or out-of-range requests.
 */

export function ipToInt(ip: string): number {
  const p = ip.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) return NaN;
  return ((p[0]! << 24) >>> 0) + (p[1]! << 16) + (p[2]! << 8) + p[3]!;
}

export function intToIp(n: number): string {
  return [(n >>> 24) & 255, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export class IpAllocator {
  private readonly base: number;
  private readonly size: number;
  private readonly used = new Set<number>();
  private next = 0;

  constructor(readonly cidr: string) {
    const [addr, bits] = cidr.split('/') as [string, string];
    const prefix = Number(bits);
    this.size = 2 ** (32 - prefix);
    this.base = ipToInt(addr) & ~(this.size - 1);
  }

  /** The n-th usable address of the range (1 = the first after the network address). */
  nth(n: number): string {
    return intToIp(this.base + n);
  }

  contains(ip: string): boolean {
    const n = ipToInt(ip);
    return n > this.base && n < this.base + this.size - 1;
  }

  /** Takes `ip`, or the next free one; returns an error message instead when it cannot. */
  allocate(ip?: string): string | { error: string } {
    if (ip) {
      if (!this.contains(ip)) return { error: `failed to allocate IP ${ip}: the provided IP (${ip}) is not in the valid range. The range of valid IPs is ${this.cidr}` };
      const n = ipToInt(ip);
      if (this.used.has(n)) return { error: `failed to allocate IP ${ip}: provided IP is already allocated` };
      this.used.add(n);
      return ip;
    }
    // skip the network address; the first addresses are typically requested explicitly
    for (let i = 0; i < this.size - 2; i++) {
      const off = ((this.next + i) % (this.size - 2)) + 1;
      const n = this.base + off;
      if (!this.used.has(n)) {
        this.used.add(n);
        this.next = off;
        return intToIp(n);
      }
    }
    return { error: 'range is full' };
  }

  release(ip: string): void {
    this.used.delete(ipToInt(ip));
  }
}

export class PortAllocator {
  private readonly used = new Set<number>();
  constructor(
    private readonly min = 30000,
    private readonly max = 32767,
  ) {}

  allocate(port?: number): number | { error: string } {
    if (port) {
      if (port < this.min || port > this.max) return { error: `provided port is not in the valid range. The range of valid ports is ${this.min}-${this.max}` };
      if (this.used.has(port)) return { error: 'provided port is already allocated' };
      this.used.add(port);
      return port;
    }
    for (let i = 0; i <= this.max - this.min; i++) {
      const p = this.min + ((Math.random() * (this.max - this.min + 1)) | 0);
      if (!this.used.has(p)) {
        this.used.add(p);
        return p;
      }
    }
    return { error: 'range is full' };
  }

  release(port: number): void {
    this.used.delete(port);
  }
}
