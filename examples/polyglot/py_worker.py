"""The Python branch of the polyglot diamond: callable "py_branch" adds one to the context's n."""
import os
import signal
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "sdk", "python"))
from tasker_worker import Worker  # noqa: E402

w = Worker(os.environ["TASKER_URL"], os.environ.get("TASKER_NAMESPACE", "polyglot"),
           worker_id=os.environ.get("TASKER_WORKER_ID"), wait_seconds=1)
w.handle("py_branch", lambda step: {"plus_one": step["context"]["n"] + 1, "by": "python",
                                    "start": step["dependency_results"].get("start")})
signal.signal(signal.SIGTERM, lambda *_: w.stop())
w.run()
