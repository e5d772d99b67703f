"""Reference worker for tasker's worker protocol (workerapi/openapi.json), standard library only.

Register handlers by callable name, then run() loops claim -> run -> heartbeat while running ->
post outcome. A handler receives the claimed step (a dict: step_id, callable, attempt, context,
inputs, dependency_results) and returns a JSON-encodable result or raises: PermanentError fails
the step for good, any other exception is retryable (RetryableError may ask for retry_after).
"""

import json
import os
import random
import threading
import time
import urllib.error
import urllib.request

__all__ = ["Worker", "RetryableError", "PermanentError", "ProtocolError", "classify"]


class RetryableError(Exception):
    """An error the step's retry policy applies to."""

    def __init__(self, message, retry_after_seconds=0):
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class PermanentError(Exception):
    """An error that fails the step for good."""


class ProtocolError(Exception):
    """An error answer of the engine (a problem document)."""

    def __init__(self, status, problem):
        super().__init__("tasker worker protocol: %s %s" % (status, (problem or {}).get("detail", "")))
        self.status = status
        self.problem = problem


def classify(err):
    """Classifies a handler's exception as Go does."""
    if isinstance(err, PermanentError):
        return {"message": str(err), "retryable": False, "retry_after_seconds": 0}
    after = err.retry_after_seconds if isinstance(err, RetryableError) else 0
    return {"message": str(err), "retryable": True, "retry_after_seconds": after}


class Worker:
    """A worker of one namespace."""

    def __init__(self, base_url, namespace, worker_id=None, lease_seconds=30, wait_seconds=10, headers=None):
        self.base_url = base_url.rstrip("/")
        self.namespace = namespace
        self.worker_id = worker_id or "python-%d-%06x" % (os.getpid(), random.getrandbits(24))
        self.lease_seconds = lease_seconds
        self.wait_seconds = wait_seconds
        self.headers = headers or {}
        self.handlers = {}
        self._stop = threading.Event()

    def handle(self, callable_name, fn):
        """Registers fn for a callable."""
        self.handlers[callable_name] = fn
        return self

    def _post(self, path, body):
        req = urllib.request.Request(self.base_url + path, data=json.dumps(body).encode(), method="POST",
                                     headers=dict({"Content-Type": "application/json"}, **self.headers))
        try:
            with urllib.request.urlopen(req, timeout=self.wait_seconds + 30) as res:
                if res.status == 204:
                    return None
                return json.loads(res.read() or b"null")
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                doc = json.loads(raw)
            except ValueError:
                doc = {"detail": raw.decode(errors="replace")}
            raise ProtocolError(e.code, doc) from None

    def claim(self):
        """Claims one step, or None when none came within wait_seconds."""
        return self._post("/v1/workers/claim", {
            "worker_id": self.worker_id, "namespace": self.namespace, "callables": list(self.handlers),
            "lease_seconds": self.lease_seconds, "wait_seconds": self.wait_seconds})

    def run_step(self, step):
        """Runs one claimed step with heartbeats, then posts its outcome."""
        path = "/v1/workers/steps/%s" % step["step_id"]
        done = threading.Event()

        def beat():
            while not done.wait(max(0.1, self.lease_seconds / 3.0)):
                try:
                    self._post(path + "/heartbeat", {"worker_id": self.worker_id, "attempt": step["attempt"],
                                                     "lease_seconds": self.lease_seconds})
                except Exception:  # a lost heartbeat shows as a stale outcome
                    pass

        t = threading.Thread(target=beat, daemon=True)
        t.start()
        outcome = {"worker_id": self.worker_id, "attempt": step["attempt"]}
        try:
            fn = self.handlers.get(step["callable"])
            if fn is None:
                raise PermanentError("no handler for %s" % step["callable"])
            outcome["result"] = fn(step)
        except Exception as err:  # classified as in Go
            outcome["error"] = classify(err)
        finally:
            done.set()
            t.join()
        self._post(path + "/outcome", outcome)

    def run(self):
        """Loops claim -> run -> outcome until stop()."""
        while not self._stop.is_set():
            try:
                step = self.claim()
            except (OSError, ProtocolError):
                if self._stop.wait(0.5):
                    return
                continue
            if step:
                try:
                    self.run_step(step)
                except (OSError, ProtocolError) as err:
                    print("tasker worker: outcome not recorded:", err, flush=True)

    def stop(self):
        """Stops run() after the current claim."""
        self._stop.set()
