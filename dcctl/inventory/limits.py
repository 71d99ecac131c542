"""How large an inventory dcctl accepts. Past these it refuses at once, naming the file and
line, instead of filling memory or working for hours on a typo or a hostile file.

Each is generous for a real cluster: 100,000 hosts, each with a few variables, in 10,000
groups, is well inside all of them (tests/perf/README.md has load time and memory).
"""

from __future__ import annotations

# The file as read from disk. 100,000 hosts with an address, a user and a port each is
# ~10 MiB; the pure-YAML work on a file this size takes seconds and well under 1 GB.
MAX_INVENTORY_BYTES = 16 * 1024 * 1024

# Values (scalars, lists, mappings) in the document, counted as if every alias were written
# out in full: what walking the tree costs. Bounds a "billion laughs" of aliases to a few
# seconds of work, and the nodes held in memory to ~1 GB.
MAX_YAML_VALUES = 2_000_000

# Nesting of lists and mappings, aliases expanded. A real inventory nests ~10 levels (each
# level of child groups is two); past this, recursive readers would hit Python's stack.
MAX_NESTING_DEPTH = 64

# Characters in a key (a host, group or variable name). YAML's plain keys stop at 1024;
# this holds the explicit `? key` form to the same.
MAX_KEY_CHARS = 1024

# Hosts in one inventory, and names one host range such as `node[1:100000]` may stand for.
MAX_HOSTS = 100_000

# Groups in one inventory.
MAX_GROUPS = 10_000

# Host-in-group pairs: each host listed under a group (ranges and aliases expanded), and
# then each host in each group it belongs to through child groups. 100,000 hosts in 20
# groups each.
MAX_MEMBERSHIPS = 2_000_000

# Group-in-ancestor pairs over all groups: the group tree resolved. A chain of groups nested
# thousands deep, or a dense lattice of them, grows this as the square of the group count.
MAX_GROUP_LINKS = 1_000_000

# Entries in one `env` or `expect` mapping as written (one group's or host's, `<<` merges
# resolved), and items in one list under `expect` (`mounts`, `ignore_xids`). A real `env`
# holds a handful of NCCL_* and CUDA_* variables. The host's env also ends up on the node's
# command line (`env NAME=value ...` before every task, dcctl/fleet/runtime.py), and over SSH
# that whole command is one argument of the login shell, which Linux caps at 128 KiB
# (MAX_ARG_STRLEN; ARG_MAX, ~2 MiB, for all arguments together): a command past it fails on
# the node with "Argument list too long". 1,000 variables of everyday length are ~30 KB, well
# inside; the lengths of values are not capped here, so a few huge ones can still pass it.
MAX_VAR_ENTRIES = 1_000

# `env` and `expect` entries copied while merging levels (a host's own over its groups', a
# child group's over its parent's), all hosts together. Hosts that set nothing of their own
# share their groups' mappings and cost nothing here, as do hosts of one range; 100,000
# hosts written one by one, each setting three env variables and an expectation of its own
# over two dozen and four of their groups', copy 3.3 million. Bounds the merged copies kept to
# ~200 MB, where hosts x entries would otherwise be unbounded.
MAX_MERGED_ENTRIES = 5_000_000
