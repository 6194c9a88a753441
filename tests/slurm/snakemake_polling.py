"""`snakemake` with the SLURM plugin's status-check back-off capped, for the test cluster.

After each round of status checks in which no job finished, snakemake-executor-plugin-slurm
waits 10 s longer before the next (up to 180 s), which spares a real cluster's accounting
database. The test cluster's jobs take seconds, so a finished job went unnoticed for up to ~11 s
and the next job waited for it: the test config's 69 jobs finished on a 12-second beat. The cap
(`LATENT_ATLAS_TEST_MAX_POLL_S`, default 2 s) keeps the polling interval short; everything else
is the plugin as it ships.

    python tests/slurm/snakemake_polling.py <snakemake arguments>
"""

from __future__ import annotations

import os
import sys

from snakemake.cli import main
from snakemake_executor_plugin_slurm import Executor

CAP = float(os.environ.get("LATENT_ATLAS_TEST_MAX_POLL_S", "2"))
_interval = Executor.next_seconds_between_status_checks  # the interface's property


def _capped(self, value):
    _interval.fset(self, None if value is None else min(value, CAP))


Executor.next_seconds_between_status_checks = property(_interval.fget, _capped)

if __name__ == "__main__":
    sys.argv[0] = "snakemake"
    sys.exit(main())
