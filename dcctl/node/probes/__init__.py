"""Probes: a reader (file, command or NVML) plus a pure parser tested from fixtures."""
