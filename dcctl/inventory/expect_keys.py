"""The keys an inventory may set under `expect`, and the YAML type each one takes.

One table, read by the inventory validator (unknown key -> error with a hint) and by the
evaluators (which expectation judges which fact).
"""

from __future__ import annotations

EXPECT_KEYS: dict[str, str] = {
    "os": "glob on PRETTY_NAME, e.g. 'Ubuntu 22.04*'",
    "kernel": "version comparison, e.g. '>=5.15'",
    "driver": "NVIDIA driver version comparison, e.g. '>=550.54'",
    "cuda": "CUDA driver version comparison, e.g. '>=12.4'",
    "gpu_count": "integer number of GPUs",
    "gpu_model": "glob on the GPU name, e.g. '*H100*'",
    "min_memory_gb": "number: least total memory in GB",
    "swap": "'off' or 'on'",
    "mounts": "list of mount points that must be mounted",
    "ib_ports": "integer number of InfiniBand ports in state ACTIVE",
    "ib_rate": "integer Gb/s every InfiniBand port must run at, e.g. 400",
}
