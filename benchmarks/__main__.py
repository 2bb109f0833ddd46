"""Run every benchmark module's ``main()`` in turn; skip, with a note, those that cannot run here.

``python -m benchmarks`` runs them all, ``python -m benchmarks dispatch`` only the ones named. A module
that fails otherwise is reported and the others still run; the exit status is then 1.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback
from pathlib import Path

from benchmarks import BenchmarkSkippedError


def main() -> None:
    only = set(sys.argv[1:])
    here = str(Path(__file__).parent)
    names = sorted(m.name for m in pkgutil.iter_modules([here]) if not m.name.startswith("_"))
    failed = []
    for name in names:
        if only and name not in only:
            continue
        print(f"== benchmarks.{name} ==", flush=True)
        try:
            importlib.import_module(f"benchmarks.{name}").main()
        except ImportError as exc:
            print(f"skipped: an optional dependency is missing ({exc})")
        except BenchmarkSkippedError as exc:
            print(f"skipped: {exc}")
        except OSError as exc:
            print(f"skipped: a service it needs is unreachable ({exc})")
        except Exception:  # noqa: BLE001 - report it and run the other benchmarks
            traceback.print_exc()
            failed.append(name)
        print(flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
