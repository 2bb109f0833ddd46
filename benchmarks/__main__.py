"""Run every benchmark module's ``main()`` in turn; skip, with a note, those that cannot run here."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from benchmarks import BenchmarkSkippedError


def main() -> None:
    only = set(sys.argv[1:])
    names = sorted(
        m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_")
    )
    for name in names:
        if only and name not in only:
            continue
        print(f"== benchmarks.{name} ==", flush=True)
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            module.main()
        except ImportError as exc:
            print(f"skipped: an optional dependency is missing ({exc})")
        except BenchmarkSkippedError as exc:
            print(f"skipped: {exc}")
        except OSError as exc:
            print(f"skipped: a service it needs is unreachable ({exc})")
        print(flush=True)


if __name__ == "__main__":
    main()
