"""What every benchmark worker rank does around its own work.

A rank dies with the process that started it (see orphans), keeps the real stdout for
progress lines only (fd 1 goes to stderr, so NCCL_DEBUG and library prints cannot reach the
progress stream), and ends by writing one `rank-<N>.json` into the launcher's directory: its
results, or the one-line error that stopped it. The launcher reads those files, not the
ranks' output.
"""

from __future__ import annotations

import json
import os
import sys
from typing import IO, TYPE_CHECKING, Any, NoReturn

from dcctl.node.bench.orphans import die_with_parent

MAX_ERROR_CHARS = 2000
# Set for the workers of a job spanning nodes (dcctl.node.bench.gang): each node's first rank
# then says when its ranks joined, which the controller's join timeout waits for.
GANG_JOB_ENV = "DCCTL_GANG_JOB"

if TYPE_CHECKING:  # subscripted builtins do not exist at runtime on the nodes' Python 3.8
    from collections.abc import Callable

    RankWork = Callable[[dict[str, Any], int, IO[str]], Any]


def claim_stdout() -> IO[str]:
    """A copy of stdout for progress; fd 1 itself then goes to stderr."""
    sys.stdout.flush()
    progress = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    return progress


def write_rank_doc(out_dir: str, rank: int, doc: Any) -> None:
    """Whole or not at all: the launcher may read the directory the moment a rank exits."""
    path = os.path.join(out_dir, f"rank-{rank}.json")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(doc, handle, sort_keys=True, allow_nan=False)
    os.replace(tmp, path)


def _out_dir(raw: Any) -> str | None:
    """Where this rank may report, even when other params are bad."""
    found = raw.get("out_dir") if isinstance(raw, dict) else None
    return found if isinstance(found, str) and os.path.isdir(found) else None


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


def run_rank(
    name: str,
    args: list[str],
    rank_of: Callable[[], int],
    checked: Callable[[Any], dict[str, Any]],
    work: RankWork,
) -> int:
    """Run one rank: 0 when its document holds results, 1 when it holds an error.

    `checked` validates the JSON params (raising on a bad one); `work` gets them, the rank
    and the progress stream, and returns the rank's document."""
    die_with_parent()
    progress = claim_stdout()
    out_dir = None
    rank = -1
    try:
        rank = rank_of()
        if len(args) != 1:
            raise ValueError(f"usage: {name.replace(' ', '_')} '<json params>'")
        raw = json.loads(args[0])
        out_dir = _out_dir(raw)
        params = checked(raw)
        if out_dir is None:
            raise ValueError(f"out_dir {params['out_dir']!r} is not a directory")
        write_rank_doc(out_dir, rank, work(params, rank, progress))
        return 0
    # Any failure, torch's included, is this rank's result: the launcher reads it from the file.
    except Exception as exc:
        message = describe(exc)
        sys.stderr.write(f"{name} rank {rank}: {message}\n")
        if out_dir is not None:
            write_rank_doc(out_dir, rank, {"rank": rank, "error": message})
        return 1


def cuda_device(torch: Any, local_rank: int) -> Any:
    """This rank's GPU (CUDA device `local_rank`), made current; a clear error when torch sees
    no GPU, or fewer than the ranks of this node."""
    if not torch.cuda.is_available():
        raise RuntimeError(f"device cuda asked for, but torch {torch.__version__} sees no GPU")
    visible = torch.cuda.device_count()
    if local_rank >= visible:
        raise RuntimeError(f"local rank {local_rank} has no GPU: {visible} visible")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def leave(status: int) -> NoReturn:
    """End a worker process with `status`. After a failure a peer may still hold this rank
    inside a collective; a normal interpreter exit could wait on the process group's
    teardown, so leave at once."""
    sys.stderr.flush()
    os._exit(status)
