// Reference worker for tasker's worker protocol (workerapi/openapi.json): register handlers by
// callable name, then run() loops claim → run → heartbeat while running → post outcome.

/**
 * @typedef {object} ClaimedStep
 * @property {string} step_id
 * @property {string} task_id
 * @property {string} namespace
 * @property {string} step
 * @property {string} callable
 * @property {number} attempt
 * @property {any} context
 * @property {any} inputs
 * @property {Record<string, any>} dependency_results
 */

/** An error the step's retry policy applies to (retried with backoff, or after retryAfterSeconds). */
export class RetryableError extends Error {
  /** @param {string} message @param {{retryAfterSeconds?: number}} [opts] */
  constructor(message, opts = {}) {
    super(message);
    this.name = 'RetryableError';
    this.retryAfterSeconds = opts.retryAfterSeconds ?? 0;
  }
}

/** An error that fails the step for good. */
export class PermanentError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = 'PermanentError';
  }
}

/** An error from the engine's HTTP API (a problem document). */
export class ProtocolError extends Error {
  /** @param {number} status @param {any} problem */
  constructor(status, problem) {
    super(`tasker worker protocol: ${status} ${problem?.detail ?? ''}`);
    this.status = status;
    this.problem = problem;
  }
}

/**
 * Classifies a handler's error as Go does: PermanentError fails for good, anything else is
 * retryable (with RetryableError's retryAfterSeconds).
 * @param {unknown} err
 * @returns {{message: string, retryable: boolean, retry_after_seconds: number}}
 */
export function classify(err) {
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof PermanentError) return { message, retryable: false, retry_after_seconds: 0 };
  const after = err instanceof RetryableError ? err.retryAfterSeconds : 0;
  return { message, retryable: true, retry_after_seconds: after };
}

export class Worker {
  /**
   * @param {{baseUrl: string, namespace: string, workerId?: string, leaseSeconds?: number,
   *   waitSeconds?: number, headers?: Record<string,string>}} opts
   */
  constructor(opts) {
    this.baseUrl = opts.baseUrl.replace(/\/$/, '');
    this.namespace = opts.namespace;
    this.workerId = opts.workerId ?? `node-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
    this.leaseSeconds = opts.leaseSeconds ?? 30;
    this.waitSeconds = opts.waitSeconds ?? 10;
    this.headers = opts.headers ?? {};
    /** @type {Map<string, (step: ClaimedStep) => any>} */
    this.handlers = new Map();
    this.stopped = false;
  }

  /** Registers a handler for a callable. @param {string} callable @param {(step: ClaimedStep) => any} fn */
  handle(callable, fn) {
    this.handlers.set(callable, fn);
    return this;
  }

  /** @param {string} path @param {any} body */
  async post(path, body) {
    const res = await fetch(this.baseUrl + path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', ...this.headers },
      body: JSON.stringify(body),
    });
    if (res.status === 204) return null;
    const text = await res.text();
    const doc = text ? JSON.parse(text) : null;
    if (!res.ok) throw new ProtocolError(res.status, doc);
    return doc;
  }

  /** Claims one step, or null when none came within waitSeconds. @returns {Promise<ClaimedStep|null>} */
  claim() {
    return this.post('/v1/workers/claim', {
      worker_id: this.workerId, namespace: this.namespace, callables: [...this.handlers.keys()],
      lease_seconds: this.leaseSeconds, wait_seconds: this.waitSeconds,
    });
  }

  /** Runs one claimed step: the handler with heartbeats, then its outcome. @param {ClaimedStep} step */
  async runStep(step) {
    const path = `/v1/workers/steps/${step.step_id}`;
    const beat = setInterval(() => {
      this.post(`${path}/heartbeat`, { worker_id: this.workerId, attempt: step.attempt, lease_seconds: this.leaseSeconds })
        .catch(() => {});
    }, Math.max(100, (this.leaseSeconds * 1000) / 3));
    let outcome;
    try {
      const fn = this.handlers.get(step.callable);
      if (!fn) throw new PermanentError(`no handler for ${step.callable}`);
      const result = await fn(step);
      outcome = { worker_id: this.workerId, attempt: step.attempt, result: result ?? null };
    } catch (err) {
      outcome = { worker_id: this.workerId, attempt: step.attempt, error: classify(err) };
    } finally {
      clearInterval(beat);
    }
    await this.post(`${path}/outcome`, outcome);
  }

  /** Loops claim → run → outcome until stop(). */
  async run() {
    while (!this.stopped) {
      let step;
      try {
        step = await this.claim();
      } catch (err) {
        if (this.stopped) return;
        await new Promise((r) => setTimeout(r, 500));
        continue;
      }
      if (step) {
        try {
          await this.runStep(step);
        } catch (err) {
          console.error('tasker worker: outcome not recorded:', err.message);
        }
      }
    }
  }

  /** Stops run() after the current claim. */
  stop() {
    this.stopped = true;
  }
}
