"""py-spy records of a running server, and where their time went.

`record` starts `py-spy record` on a pid (and its workers) for a window; `summarize`
reads py-spy's raw (collapsed-stack) output: each line is `frame;frame;…;frame COUNT`
with frames like `Executor.complete_value (graphql/execution/execute.py:745)`,
outermost first. Idle samples (a thread waiting: epoll, the aiosqlite thread's queue)
are not recorded.

* `layers`: each sample goes to the library (or Tally package) of its innermost frame,
  i.e. the code that was running ("self" time).
* `stages`: each sample goes to the innermost frame that matches one of the stages of a
  request (the service, the ORM and driver, the schema's result mapping, GraphQL
  execution, JSON encoding, HTTP…), i.e. the step of the request it was spent in.
* `functions`: the innermost frames with the most samples.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bench.harness import PYTHON

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")
_FORMATS = {".json": "speedscope", ".txt": "raw"}


def record(
    pid: int, output: Path, seconds: float, *, delay: float = 0.0
) -> subprocess.Popen[bytes]:
    """py-spy over `seconds` after `delay`, into `output` (.svg flame graph, .json, .txt raw)."""
    py_spy = shutil.which("py-spy") or str(Path(PYTHON).with_name("py-spy"))
    form = _FORMATS.get(output.suffix, "flamegraph")
    command = (
        f"sleep {delay}; exec {py_spy} record --pid {pid} --subprocesses --rate 250"
        f" --format {form} --duration {max(1, int(seconds))} --output {output} --nonblocking"
    )
    return subprocess.Popen(
        ["sh", "-c", command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


# (label, test on the frame's file path), first match wins.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("graphql-core", ("graphql/",)),
    ("Strawberry", ("strawberry/",)),
    ("Tally schema/ (types, from_result)", ("schema/",)),
    ("Tally services/", ("services/",)),
    ("Tally api/", ("api/",)),
    ("Tortoise + pypika", ("tortoise/", "pypika/")),
    ("aiosqlite + sqlite3 (thread)", ("aiosqlite/", "sqlite3/")),
    ("asyncpg", ("asyncpg/",)),
    ("json (encoding/decoding)", ("json/",)),
    ("uvicorn + h11", ("uvicorn/", "h11/")),
    ("Starlette", ("starlette/",)),
    ("asyncio, threading, queue", ("asyncio/", "threading.py", "queue.py", "selectors.py")),
    ("generated code (<string>: dataclass __init__, lambdas)", ("<string>",)),
    (
        "datetime, zoneinfo, enum, dataclasses",
        ("datetime.py", "zoneinfo/", "enum.py", "dataclasses.py", "_strptime.py"),
    ),
)

# (label, file path fragment); a sample belongs to the INNERMOST frame that matches.
STAGES: tuple[tuple[str, str], ...] = (
    ("auth: token lookup (get_context)", "services/tokens.py"),
    ("service: account_usage (Python)", "services/usage.py"),
    ("service: rollups SQL (Python side)", "services/rollups.py"),
    ("service: calendar buckets", "services/calendar.py"),
    ("ORM / driver", "tortoise/"),
    ("ORM / driver", "aiosqlite/"),
    ("ORM / driver", "asyncpg/"),
    ("schema: UsageReport.from_result", "schema/usage.py"),
    ("JSON encoding of the response", "json/"),
    ("GraphQL execution (graphql-core)", "graphql/"),
    ("Strawberry (view, execution wrappers, extensions)", "strawberry/"),
    ("HTTP: uvicorn/h11/Starlette", "uvicorn/"),
    ("HTTP: uvicorn/h11/Starlette", "h11/"),
    ("HTTP: uvicorn/h11/Starlette", "starlette/"),
)


@dataclass
class Profile:
    samples: int
    layers: list[tuple[str, int]]
    stages: list[tuple[str, int]]
    functions: list[tuple[str, int]]

    def lines(self, top: int = 10) -> list[str]:
        if not self.samples:
            return ["(no samples)"]
        found = [f"{self.samples} non-idle samples"]
        for title, rows in (
            ("by stage of the request (innermost matching frame)", self.stages),
            ("by library of the running code (innermost frame)", self.layers),
            (f"top {top} functions (self)", self.functions[:top]),
        ):
            found.append(f"  {title}:")
            found += [f"    {100 * count / self.samples:5.1f}%  {label}" for label, count in rows]
        return found


def _frames(stack: str) -> list[tuple[str, str]]:
    result = []
    for raw in stack.split(";"):
        match = _FRAME.match(raw.strip())
        result.append((match["func"], match["file"]) if match else (raw.strip(), ""))
    return result


def _layer(file: str) -> str:
    for label, needles in LAYERS:
        if any(needle in file for needle in needles):
            return label
    return f"other ({file.rsplit('/', 1)[-1] or '?'})"


def _stage(frames: list[tuple[str, str]]) -> str:
    for _, file in reversed(frames):
        for label, needle in STAGES:
            if needle in file:
                return label
    return "other"


def summarize(path: Path) -> Profile:
    layers: Counter[str] = Counter()
    stages: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = _frames(stack)
        if not frames:
            continue
        total += count
        func, file = frames[-1]
        layers[_layer(file)] += count
        stages[_stage(frames)] += count
        functions[f"{func} ({file})"] += count
    return Profile(
        samples=total,
        layers=layers.most_common(),
        stages=stages.most_common(),
        functions=functions.most_common(),
    )
