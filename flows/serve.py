"""Serve every deployment of prefect.yaml from this process (``python -m flows.serve``).

With no PREFECT_API_URL set, a temporary local Prefect server runs for the duration and its
address is printed (another shell reaches it with ``export PREFECT_API_URL=...``); set
PREFECT_API_URL to serve against a Prefect server or Prefect Cloud instead.
"""

from __future__ import annotations

import sys

from prefect import serve

from ctsync.errors import CtsyncError
from flows.deployments import check, read_prefect_yaml, recurring_exports, runner_deployments
from flows.local_api import prefect_api


def main() -> int:
    try:
        specs = read_prefect_yaml()
        problems = check(specs, recurring_exports())
    except CtsyncError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if problems:
        for problem in problems:
            print(f"problem: {problem}", file=sys.stderr)
        print("fix prefect.yaml (python -m flows.deployments write) before serving", file=sys.stderr)
        return 1
    with prefect_api() as (url, temporary):
        if temporary:
            print(
                f"no PREFECT_API_URL: serving with a temporary Prefect server at {url} "
                f"(UI: {url.removesuffix('/api')}) until Ctrl-C. From another shell: export PREFECT_API_URL={url}",
                flush=True,
            )
        serve(*runner_deployments(specs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
