"""`jobtrail db init`: the one command that loads Alembic."""

from __future__ import annotations

import argparse
import sys

from jobtrail.adapters.bootstrap import Jobtrail


def cmd_db_init(trail: Jobtrail, args: argparse.Namespace) -> int:
    trail.init_db()
    print("schema is up to date", file=sys.stderr)
    return 0
