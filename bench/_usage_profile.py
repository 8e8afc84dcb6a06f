"""Read py-spy's raw (collapsed-stack) output and say where the server's time went.

Each line of ``py-spy record --format raw`` is ``frame;frame;…;frame COUNT`` with frames
like ``Executor.complete_value (graphql/execution/execute.py:745)``, outermost first.
Idle samples (a thread waiting: epoll, the aiosqlite thread's queue) are not recorded.

* ``layers``: each sample goes to the library (or Tally package) of its innermost frame,
  i.e. the code that was running ("self" time).
* ``stages``: each sample goes to the innermost frame that matches one of the stages of a
  request (the service, the ORM and driver, the schema's result mapping, GraphQL
  execution, JSON encoding, HTTP…), i.e. the step of the request it was spent in.
* ``functions``: the innermost frames with the most samples.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")

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
    ),  # fmt: skip
)

# (label, test on the frame: file path fragment, optional function-name fragment);
# a sample belongs to the INNERMOST frame that matches any stage.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("auth: token lookup (get_context)", "services/tokens.py", ""),
    ("service: account_usage (Python)", "services/usage.py", ""),
    ("service: rollups SQL (Python side)", "services/rollups.py", ""),
    ("service: calendar buckets", "services/calendar.py", ""),
    ("ORM / driver", "tortoise/", ""),
    ("ORM / driver", "aiosqlite/", ""),
    ("ORM / driver", "asyncpg/", ""),
    ("schema: UsageReport.from_result", "schema/usage.py", ""),
    ("JSON encoding of the response", "json/", ""),
    ("GraphQL execution (graphql-core)", "graphql/", ""),
    ("Strawberry (view, execution wrappers, extensions)", "strawberry/", ""),
    ("HTTP: uvicorn/h11/Starlette", "uvicorn/", ""),
    ("HTTP: uvicorn/h11/Starlette", "h11/", ""),
    ("HTTP: uvicorn/h11/Starlette", "starlette/", ""),
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
        out = [f"{self.samples} non-idle samples"]
        for title, rows in (
            ("by stage of the request (innermost matching frame)", self.stages),
            ("by library of the running code (innermost frame)", self.layers),
            (f"top {top} functions (self)", self.functions[:top]),
        ):
            out.append(f"  {title}:")
            for label, count in rows:
                out.append(f"    {100 * count / self.samples:5.1f}%  {label}")
        return out


def _frames(stack: str) -> list[tuple[str, str]]:
    result = []
    for raw in stack.split(";"):
        match = _FRAME.match(raw.strip())
        if match:
            result.append((match["func"], match["file"]))
        else:
            result.append((raw.strip(), ""))
    return result


def _layer(file: str) -> str:
    for label, needles in LAYERS:
        if any(needle in file for needle in needles):
            return label
    return f"other ({file.rsplit('/', 1)[-1] or '?'})"


def _stage(frames: list[tuple[str, str]]) -> str:
    for func, file in reversed(frames):
        for label, needle, name in STAGES:
            if needle in file and name in func:
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
