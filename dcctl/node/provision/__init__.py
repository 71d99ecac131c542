"""The `provision` node task: bring a node to what the benchmarks need, touching only what is
missing (a venv with torch and nvidia-ml-py, fio, persistence mode, the scratch directory).

One module per step, `commands` for running argv and `task` for the order and the payload.
Standard library only, Python 3.8 syntax: it runs on the node.
"""
