"""Node runtime: runs on the server, standard library only at import time."""
