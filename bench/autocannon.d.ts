// autocannon ships no types and @types/autocannon is not a dependency: this declares the part the
// benchmark uses (autocannon 9, programmatic API), so bench/ type-checks under `strict`.
declare module 'autocannon' {
  namespace autocannon {
    interface Request {
      method?: string;
      path?: string;
      headers?: Record<string, string>;
      body?: string;
    }

    /** One connection; `setupClient` receives it before its first request. */
    interface Client {
      setRequests(requests: Request[]): void;
    }

    interface Histogram {
      average: number;
      mean: number;
      stddev: number;
      min: number;
      max: number;
      total: number;
      p50: number;
      p90: number;
      p99: number;
    }

    interface Options {
      url: string;
      connections?: number;
      pipelining?: number;
      /** Seconds. */
      duration?: number;
      /** Requests in all; when set, the run ends after them instead of after `duration`. */
      amount?: number;
      /** Seconds before a request counts as a timeout. */
      timeout?: number;
      requests?: Request[];
      setupClient?: (client: Client) => void;
    }

    interface Result {
      /** Seconds, measured by autocannon from the first connection to the last sample. */
      duration: number;
      errors: number;
      timeouts: number;
      mismatches: number;
      non2xx: number;
      resets: number;
      '2xx': number;
      /** Milliseconds. */
      latency: Histogram;
      /** Per-second samples; `total` is the number of completed requests. */
      requests: Histogram & { sent: number };
      throughput: Histogram;
      statusCodeStats: Record<string, { count: number }>;
    }
  }

  /** Without a callback the returned instance is thenable (it resolves with the result). */
  function autocannon(options: autocannon.Options): PromiseLike<autocannon.Result>;
  export default autocannon;
}
