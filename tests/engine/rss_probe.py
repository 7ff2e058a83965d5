"""Run one command through the executor in a fresh process and report this process's peak RSS.

    python rss_probe.py COMMAND OUTPUT_LIMIT  ->  one JSON line on stdout
"""

import json
import resource
import sys
import time

from queuectl import executor


def main() -> None:
    command, limit = sys.argv[1], int(sys.argv[2])
    started = time.monotonic()
    result = executor.run(command, output_limit=limit)
    elapsed = time.monotonic() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({
        "peak_kib": peak_kib,
        "seconds": elapsed,
        "error": result.error,
        "output_chars": len(result.output),
        "head": result.output[:120],
        "tail": result.output[-20:],
    }))


if __name__ == "__main__":
    main()
