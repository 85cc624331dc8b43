"""What `offload` exits with, so scripts can tell outcomes apart."""

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    JOB_DID_NOT_SUCCEED = 1   # --wait / wait: the job ended failed, dead or cancelled
    USAGE = 2                 # bad arguments or configuration (e.g. no API key)
    REFUSED = 3               # the service refused the request (4xx: bad key, no such job, conflict...)
    UNAVAILABLE = 4           # the service could not be reached or kept failing (5xx, 429 after retries)
    TIMED_OUT = 5             # --wait-timeout passed before the job finished
    INTERRUPTED = 130         # Ctrl-C while waiting (the job goes on)
