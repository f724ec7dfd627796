"""One Lambda execution environment: ``python container.py MODULE.FUNCTION``.

Started by tests/rehearsal/apigw.py with exactly the environment the template gives the
function (plus what the Lambda runtime sets), it imports the handler the template names,
then answers invocations: one JSON event a line on stdin, one JSON line on stdout
(``{"result": ...}`` or ``{"error": type, "message": ...}``). Like Lambda, an error in the
handler fails that invocation only; the container stays warm.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback


class Context:
    """The parts of Lambda's context object nodecert reads."""

    def __init__(self, timeout_s: float) -> None:
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main() -> int:
    handler_name, timeout_s = sys.argv[1], float(sys.argv[2])
    out = sys.stdout
    sys.stdout = sys.stderr  # handler prints go to the "log", never into the protocol
    module_name, _, function_name = handler_name.rpartition(".")
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as exc:  # Runtime.ImportModuleError / HandlerNotFound
        traceback.print_exc()
        failure = {"error": "Runtime.ImportModuleError", "message": f"{type(exc).__name__}: {exc}"}
        for _ in sys.stdin:
            out.write(json.dumps(failure) + "\n")
            out.flush()
        return 0
    # Where the code came from, for the rehearsal to check (the package, nothing else).
    print(f"container: nodecert from {sys.modules['nodecert'].__file__}", file=sys.stderr)
    sys.stderr.flush()
    for line in sys.stdin:
        event = json.loads(line)
        try:
            reply = {"result": handler(event, Context(timeout_s))}
        except Exception as exc:
            traceback.print_exc()
            reply = {"error": type(exc).__name__, "message": str(exc)}
        out.write(json.dumps(reply) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
