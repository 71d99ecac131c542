"""Benchmarks that run on the node: GEMM, allreduce and fio, started by the `bench` task."""
