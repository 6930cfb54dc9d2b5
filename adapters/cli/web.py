"""`jobtrail web`: the dashboard (`jobtrail.adapters.web`), served by uvicorn."""

from __future__ import annotations

import argparse
import logging
import sys

from jobtrail.adapters.bootstrap import Jobtrail

log = logging.getLogger("jobtrail.web")


def cmd_web(trail: Jobtrail, args: argparse.Namespace) -> int:
    if args.allow_actions and not args.token:
        print(
            "jobtrail: error: --allow-actions needs --token TOKEN (or JOBTRAIL_WEB_TOKEN)",
            file=sys.stderr,
        )
        return 2
    import uvicorn
    from jobtrail.adapters.web.app import create_app

    app = create_app(trail, allow_actions=args.allow_actions, token=args.token)
    mode = "actions allowed (with the token)" if args.allow_actions else "read-only"
    log.info("dashboard on http://%s:%d/ (%s)", args.host, args.port, mode)
    # log_config=None: uvicorn logs through the logging `jobtrail` configured.
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=args.verbose)
    return 0
