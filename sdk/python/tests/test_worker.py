import json
import os
import sys
import threading
import unittest
from http.server import BaseHTTPRequestHandler, HTTPServer

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from tasker_worker import PermanentError, RetryableError, Worker, classify  # noqa: E402


class ClassifyTest(unittest.TestCase):
    def test_classify(self):
        self.assertEqual(classify(PermanentError("bad")), {"message": "bad", "retryable": False, "retry_after_seconds": 0})
        self.assertEqual(classify(RetryableError("later", 3))["retry_after_seconds"], 3)
        self.assertTrue(classify(ValueError("boom"))["retryable"])


class WorkerTest(unittest.TestCase):
    def test_claim_run_report(self):
        got = []

        class H(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                got.append((self.path, body))
                if self.path == "/v1/workers/claim":
                    out = json.dumps({"step_id": "s1", "callable": "triple", "attempt": 2,
                                      "context": {"n": 5}, "dependency_results": {}}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                    return
                self.send_response(204)
                self.end_headers()

        srv = HTTPServer(("127.0.0.1", 0), H)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        try:
            w = Worker("http://127.0.0.1:%d" % srv.server_port, "ns", worker_id="w1", wait_seconds=0)
            w.handle("triple", lambda s: {"n": s["context"]["n"] * 3})
            w.run_step(w.claim())
        finally:
            srv.shutdown()
        self.assertEqual(got[0][1]["callables"], ["triple"])
        self.assertEqual(got[1], ("/v1/workers/steps/s1/outcome", {"worker_id": "w1", "attempt": 2, "result": {"n": 15}}))


if __name__ == "__main__":
    unittest.main()
