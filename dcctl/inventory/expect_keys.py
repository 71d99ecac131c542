"""The keys an inventory may set under `expect`, and the YAML type each one takes.

One table, read by the inventory validator (unknown key -> error with a hint) and by the
evaluators (which expectation judges which fact). Keys with a default in HEALTH_DEFAULTS are
judged on every node that has the hardware, whether or not the inventory sets them.
"""

from __future__ import annotations

from typing import Any

EXPECT_KEYS: dict[str, str] = {
    "os": "glob on PRETTY_NAME, e.g. 'Ubuntu 22.04*'",
    "kernel": "version comparison, e.g. '>=5.15'",
    "driver": "NVIDIA driver version comparison, e.g. '>=550.54'",
    "cuda": "CUDA driver version comparison, e.g. '>=12.4'",
    "gpu_count": "integer number of GPUs",
    "gpu_model": "glob on the GPU name, e.g. '*H100*'",
    "min_memory_gb": "number: least total memory in GiB",
    "swap": "'off' or 'on'",
    "mounts": "list of mount points that must be mounted and writable",
    "ib_ports": "integer: least number of InfiniBand ports in state ACTIVE",
    "ib_rate": "integer Gb/s every InfiniBand port must run at, e.g. 400",
    # GPU health (defaults below apply whenever GPUs are present)
    "vbios_uniform": "true/false: every GPU of a node runs the same VBIOS",
    "persistence_mode": "'on', 'off' or 'any'",
    "mig_mode": "'on', 'off' or 'any'",
    "max_gpu_processes": "integer: compute processes allowed on an idle node's GPUs",
    "ecc": "'on', 'off' or 'any'",
    "max_ecc_correctable": "integer: volatile correctable ECC errors per GPU before a warning",
    "max_pcie_replays": "integer: PCIe replay counter per GPU before a warning",
    "max_gpu_temp_c": "number: GPU temperature that fails (default: warn near slowdown)",
    "max_power_fraction": "number: power draw as a fraction of the enforced limit before a warning",
    "nvlink_links": "integer: active NVLink links per GPU (default: every populated link)",
    "max_nvlink_replay": "integer: NVLink replay errors per link before a warning",
    "max_nvlink_recovery": "integer: NVLink recovery errors per link before a warning",
    "max_nvlink_crc": "integer: NVLink CRC errors per link before a warning",
    "fabric_manager": "'auto' (required with NVSwitch), 'required' or 'off'",
    # Node health
    "xid_window_h": "number: hours of kernel log searched for XID errors",
    "ignore_xids": "list of XID numbers never reported",
    "xid_status": "mapping of XID number to 'fail', 'warn', 'count' or 'ignore': overrides the "
    "status NVIDIA's Xid catalog gives it, e.g. {63: fail, 13: ignore}",
    "nvidia_peermem": "'auto' (required with GPUs and InfiniBand), 'required' or 'off'",
    "max_ib_link_downed": "integer: InfiniBand link_downed counter per port before a warning",
    "nvme_count": "integer number of NVMe controllers",
    "min_scratch_free_gb": "number: least free GiB in scratch_dir",
}

HEALTH_DEFAULTS: dict[str, Any] = {
    "vbios_uniform": True,
    "persistence_mode": "on",
    "mig_mode": "off",
    "max_gpu_processes": 0,
    "ecc": "on",
    "max_ecc_correctable": 100,
    "max_pcie_replays": 100,
    "max_power_fraction": 1.0,
    "max_nvlink_replay": 100,
    "max_nvlink_recovery": 10,
    "max_nvlink_crc": 100,
    "fabric_manager": "auto",
    "xid_window_h": 24,
    "ignore_xids": [],
    "xid_status": {},
    "nvidia_peermem": "auto",
    "max_ib_link_downed": 0,
}
