import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Worker, classify, PermanentError, RetryableError } from '../src/index.mjs';

test('classify sorts errors as Go does', () => {
  assert.deepEqual(classify(new PermanentError('bad')), { message: 'bad', retryable: false, retry_after_seconds: 0 });
  assert.deepEqual(classify(new RetryableError('later', { retryAfterSeconds: 2 })), { message: 'later', retryable: true, retry_after_seconds: 2 });
  assert.equal(classify(new Error('boom')).retryable, true);
});

test('a worker claims, runs and reports', async () => {
  const got = [];
  let claimed = false;
  const srv = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      got.push([req.url, JSON.parse(body)]);
      if (req.url === '/v1/workers/claim' && !claimed) {
        claimed = true;
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ step_id: 's1', callable: 'double', attempt: 1, context: { n: 21 }, dependency_results: {} }));
        return;
      }
      res.statusCode = 204;
      res.end();
    });
  });
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const w = new Worker({ baseUrl: `http://127.0.0.1:${srv.address().port}`, namespace: 'ns', workerId: 'w1', waitSeconds: 0 });
  w.handle('double', (s) => ({ n: s.context.n * 2 }));
  const step = await w.claim();
  await w.runStep(step);
  srv.close();
  assert.equal(got[0][1].callables[0], 'double');
  assert.deepEqual(got[1], ['/v1/workers/steps/s1/outcome', { worker_id: 'w1', attempt: 1, result: { n: 42 } }]);
});
