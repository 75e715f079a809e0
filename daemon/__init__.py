"""The nextround service: configuration, IMAP adapter, state store, sync loop and CLI."""

import os

# Before anything imports numpy: the classifier's arithmetic is small and sparse, so OpenBLAS's
# thread pool would only cost CPU at start-up (a third of a second), in the daemon and in each
# triage helper it starts (they inherit this). A user's own setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
