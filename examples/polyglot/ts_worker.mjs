// The TypeScript branch of the polyglot diamond: callable "ts_branch" doubles the context's n.
// With context.sleep_first set, its first attempt sleeps (to be killed mid-step).
import { Worker } from '../../sdk/typescript/src/index.mjs';

const w = new Worker({
  baseUrl: process.env.TASKER_URL, namespace: process.env.TASKER_NAMESPACE ?? 'polyglot',
  workerId: process.env.TASKER_WORKER_ID, leaseSeconds: Number(process.env.TASKER_LEASE_SECONDS ?? 30), waitSeconds: 1,
});
w.handle('ts_branch', async (step) => {
  if (step.context.sleep_first && step.attempt === 1) {
    console.log('sleeping', step.step_id);
    await new Promise((r) => setTimeout(r, 600_000));
  }
  return { doubled: step.context.n * (step.config?.factor ?? 0), by: 'node', start: step.dependency_results.start };
});
process.on('SIGTERM', () => w.stop());
await w.run();
