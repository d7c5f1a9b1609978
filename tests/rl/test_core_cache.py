"""rl/core.py's numba cache follows the kernel's source (and the helpers it inlines).

numba keys a cached function on its own file only; core.py compiles sim.kernel.step_bar
into its own machine code. The end-to-end test shows the stale-cache problem on a pair of
throwaway modules (without the fix the edited callee is NOT seen) and that
``follow_sources`` makes the edited callee be compiled in.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from perptrader.rl import core
from perptrader.rl.numba_cache import FollowSourcesLocator, sources_digest
from perptrader.sim import kernel

SRC = Path(__file__).resolve().parents[2] / "src"


def test_core_functions_use_the_following_locator() -> None:
    locator = core.step_batch._cache._impl.locator
    assert isinstance(locator, FollowSourcesLocator)
    deps = {Path(p).name for p in locator._dependencies}
    assert {"kernel.py", "actions.py", "reward.py"} <= deps
    assert os.path.abspath(kernel.__file__) in locator._dependencies


def test_changed_dependency_changes_the_stamp(tmp_path: Path) -> None:
    dep = tmp_path / "kernel.py"
    dep.write_text("X = 1\n")
    inner = core.step_batch._cache._impl.locator._inner
    locator = FollowSourcesLocator(inner, (str(dep),))
    before = locator.get_source_stamp()
    assert locator.get_source_stamp() == before  # stable while nothing changes
    dep.write_text("X = 2\n")  # same size, same name: only the content differs
    assert locator.get_source_stamp() != before
    assert sources_digest([str(dep)]) != sources_digest([str(dep) + ".missing"])


CALLEE = """
from numba import njit

CONST = {value}

@njit(cache=True)
def g():
    return CONST * 10 + {value}
"""

CALLER = """
from numba import njit

import callee
{follow}

@njit(cache=True)
def f():
    return callee.g()
"""

FOLLOW = "from perptrader.rl.numba_cache import follow_sources\n" \
         "follow_sources(__file__, [callee.__file__])"


def _run(folder: Path) -> int:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(folder), str(SRC)])}
    env.pop("NUMBA_DISABLE_JIT", None)
    out = subprocess.run([sys.executable, "-c", "import caller; print(caller.f())"],
                         cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip().splitlines()[-1])


def _scenario(folder: Path, follow: bool) -> tuple[int, int]:
    folder.mkdir()
    (folder / "callee.py").write_text(CALLEE.format(value=1))
    (folder / "caller.py").write_text(CALLER.format(follow=FOLLOW if follow else ""))
    first = _run(folder)  # compiles and writes the cache of caller.f (with g inside)
    (folder / "callee.py").write_text(CALLEE.format(value=2))
    return first, _run(folder)


def test_edited_kernel_is_not_served_from_the_old_cache(tmp_path: Path) -> None:
    first, second = _scenario(tmp_path / "followed", follow=True)
    assert first == 11
    assert second == 22  # the edited callee is compiled in, not the cached old one
    # the problem being fixed: without follow_sources numba serves caller.f from its
    # cache, with the OLD callee inside
    first, second = _scenario(tmp_path / "plain", follow=False)
    assert (first, second) == (11, 11)
