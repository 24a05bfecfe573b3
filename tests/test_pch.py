"""The ns-3 header cache (ns3_uml.pch): keys, reuse, repair, fallback, and ns-3 working with it.

The real header is built once (a minute at most) into the ordinary cache by the session
fixture; the cache logic itself is tested with a stand-in compiler.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from ns3_uml import _native, pch

PLAN = {
    "search": {},
    "linked": [],
    "calls": [
        ["add_include_path", "/nonexistent/ns3/include"],
        ["cppexec", "\n#ifndef HAVE_SQLITE3\n#define HAVE_SQLITE3 1\n#endif\n"],
        ["cppexec", ""],
        ["include", "ns3/core-module.h"],
        ["load_library", "libns3.44-core.so"],
    ],
}


@pytest.fixture()
def our_headers(tmp_path: Path) -> list[Path]:
    inc = tmp_path / "include"
    inc.mkdir()
    (inc / "uml-calendar.h").write_text("// calendar v1\n")
    return [inc]


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("NS3_UML_CACHE", str(root))
    return root


@pytest.fixture()
def fake_compiler(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Replaces makepch + the check: writes a small file, records each build."""
    builds: list[Path] = []

    def make(header: Path, include_paths: list[str], out: Path, log: Path) -> None:
        assert '#include "ns3/core-module.h"' in header.read_text()
        time.sleep(0.2)  # long enough for a second process to find the lock taken
        out.write_bytes(b"PCH" * 1000)
        builds.append(out)

    monkeypatch.setattr(pch, "_make_pch", make)
    return builds


def test_key_changes_when_an_input_changes(our_headers, monkeypatch):
    key = pch.pch_key(PLAN, our_headers, _native.HEADERS)
    assert pch.pch_key(PLAN, our_headers, _native.HEADERS) == key  # deterministic

    (our_headers[0] / "uml-calendar.h").write_text("// calendar v2\n")
    changed_header = pch.pch_key(PLAN, our_headers, _native.HEADERS)
    assert changed_header != key

    more_defines = json.loads(json.dumps(PLAN))
    more_defines["calls"].insert(0, ["cppexec", "#define NS3_CLICK 1"])
    assert pch.pch_key(more_defines, our_headers, _native.HEADERS) != changed_header

    monkeypatch.setenv("EXTRA_CLING_ARGS", " -O0")
    assert pch.pch_key(PLAN, our_headers, _native.HEADERS) != changed_header
    monkeypatch.undo()

    other_dir = our_headers[0].parent / "elsewhere"
    other_dir.mkdir()
    (other_dir / "uml-calendar.h").write_text("// calendar v2\n")
    assert pch.pch_key(PLAN, [other_dir], _native.HEADERS) != changed_header

    monkeypatch.setattr(pch, "_distribution_stamp", lambda name: f"{name} 9.9")
    assert pch.pch_key(PLAN, our_headers, _native.HEADERS) != changed_header


def test_key_ignores_the_order_the_wheel_happens_to_use(our_headers):
    # The wheel's loader orders include paths and modules by set iteration (per process).
    plan = json.loads(json.dumps(PLAN))
    plan["calls"][3:3] = [["add_include_path", "/usr/lib"], ["include", "ns3/csma-module.h"]]
    shuffled = json.loads(json.dumps(plan))
    shuffled["calls"].reverse()
    assert pch.pch_key(plan, our_headers, ()) == pch.pch_key(shuffled, our_headers, ())


def test_plan_key_follows_the_library_search_path(monkeypatch):
    module, _ = pch._wheel_module()
    key = pch.plan_key(module)
    assert pch.plan_key(module) == key
    monkeypatch.setenv("LD_LIBRARY_PATH", "/opt/somewhere/lib")
    assert pch.plan_key(module) != key


def test_cached_header_is_reused_not_rebuilt(cache, our_headers, fake_compiler):
    first = pch.ensure_pch(PLAN, our_headers, _native.HEADERS)
    inode = first.stat().st_ino
    second = pch.ensure_pch(PLAN, our_headers, _native.HEADERS)
    assert second == first and second.stat().st_ino == inode
    assert len(fake_compiler) == 1
    header = (first.parent / pch.HEADER_NAME).read_text()
    assert "#define HAVE_SQLITE3 1" in header
    assert header.index('"ns3/core-module.h"') < header.index('"uml-calendar.h"')


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing", "no_manifest"])
def test_broken_header_is_rebuilt(cache, our_headers, fake_compiler, damage):
    path = pch.ensure_pch(PLAN, our_headers, _native.HEADERS)
    if damage == "garbage":
        path.write_bytes(os.urandom(5000))
    elif damage == "truncated":
        with open(path, "r+b") as f:
            f.truncate(100)
    elif damage == "missing":
        path.unlink()
    else:
        (path.parent / pch.MANIFEST_NAME).unlink()
    assert pch.ensure_pch(PLAN, our_headers, _native.HEADERS) == path
    assert len(fake_compiler) == 2
    assert path.read_bytes() == b"PCH" * 1000


def test_failed_build_leaves_nothing_half_done_and_is_not_retried_at_once(
        cache, our_headers, monkeypatch):
    attempts = []

    def fail(header, include_paths, out, log):
        attempts.append(out)
        out.write_bytes(b"half")
        raise pch.PchUnavailable("compiler exploded")

    monkeypatch.setattr(pch, "_make_pch", fail)
    with pytest.raises(pch.PchUnavailable, match="exploded"):
        pch.ensure_pch(PLAN, our_headers, _native.HEADERS)
    kdir = pch.pch_root() / pch.pch_key(PLAN, our_headers, _native.HEADERS)
    assert not (kdir / pch.PCH_NAME).exists()
    assert not list(kdir.glob("*.tmp*"))
    assert not (kdir / pch.MANIFEST_NAME).exists()

    with pytest.raises(pch.PchUnavailable, match="earlier build"):
        pch.ensure_pch(PLAN, our_headers, _native.HEADERS)
    assert len(attempts) == 1

    monkeypatch.setattr(pch, "RETRY_AFTER_S", 0)
    with pytest.raises(pch.PchUnavailable, match="exploded"):
        pch.ensure_pch(PLAN, our_headers, _native.HEADERS)
    assert len(attempts) == 2


def test_concurrent_builders_build_once(cache, our_headers, fake_compiler):
    # flock is per open file, so two threads contend like two processes.
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(
        pch.ensure_pch(PLAN, our_headers, _native.HEADERS))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0] == results[1]
    assert len(fake_compiler) == 1


def test_old_headers_are_pruned(cache, our_headers, fake_compiler):
    paths = []
    for i in range(pch.KEEP + 2):
        (our_headers[0] / "uml-calendar.h").write_text(f"// version {i}\n")
        paths.append(pch.ensure_pch(PLAN, our_headers, _native.HEADERS))
        time.sleep(0.02)  # distinct manifest mtimes
    kept = [p for p in paths if p.exists()]
    assert kept == paths[-pch.KEEP:]


def test_bypass_reasons(monkeypatch):
    monkeypatch.delitem(sys.modules, "cppyy", raising=False)
    for name in ("CLING_STANDARD_PCH", "NS3_UML_NO_PCH", "CLING_REBUILD_PCH"):
        monkeypatch.delenv(name, raising=False)
    assert pch.disabled_reason() is None
    monkeypatch.setenv("NS3_UML_NO_PCH", "1")
    assert "NS3_UML_NO_PCH" in pch.disabled_reason()
    monkeypatch.setenv("NS3_UML_NO_PCH", "0")
    assert pch.disabled_reason() is None
    monkeypatch.setenv("CLING_STANDARD_PCH", "/somewhere/users.pch")
    assert "CLING_STANDARD_PCH" in pch.disabled_reason()
    # Ours, inherited from a parent process: not the user's choice.
    monkeypatch.setenv("CLING_STANDARD_PCH", str(pch.pch_root() / "abc" / pch.PCH_NAME))
    assert pch.disabled_reason() is None
    # cppyy's standard header, which cppyy puts in os.environ for children to inherit.
    cppyy_dir = Path(importlib.util.find_spec("cppyy").origin).parent
    monkeypatch.setenv("CLING_STANDARD_PCH", str(cppyy_dir / "allDict.cxx.pch.6.32.8"))
    assert pch.disabled_reason() is None
    monkeypatch.setenv("CLING_REBUILD_PCH", "1")
    assert "CLING_REBUILD_PCH" in pch.disabled_reason()
    monkeypatch.delenv("CLING_REBUILD_PCH")
    monkeypatch.setitem(sys.modules, "cppyy", object())
    assert "cppyy" in pch.disabled_reason()


# ---------------------------------------------------------------------------
# The real header, in child processes (ns-3 loads once per process)

CHECK_NS3 = textwrap.dedent("""
    import builtins, json, sys
    import ns3_uml
    from ns3_uml import _native, pch
    ns = _native.load()
    from ns import ns as ns2
    node = ns.CreateObject["ns3::Node"]()
    fired = []
    callback = lambda: fired.append(1)  # noqa: E731 (cppyy keeps no reference of its own)
    ns.Simulator.Schedule["std::function<void()>"](ns.Seconds(1), callback)
    ns.Simulator.Stop(ns.Seconds(2))
    ns.Simulator.Run()
    now = ns.Simulator.Now().GetSeconds()
    ns.Simulator.Destroy()
    ok, tid = ns.LookupByNameFailSafe(_native.CALENDAR_TYPE)
    try:
        marker = int(ns.cppyy.macro(pch.MARKER))  # defined by the header only
    except ValueError:
        marker = None
    print(json.dumps({
        "pch": str(pch.in_use()) if pch.in_use() else None,
        "marker": marker,
        "node_id": int(node.GetId()),
        "fired": fired, "now": now,
        "calendar_type": str(tid.GetName()) if ok else None,
        "same_ns": ns2 is ns and builtins.ns is ns,
        "modules": sys.modules["ns"] is sys.modules["ns3.ns"],
        "time_compare": bool(ns.Seconds(1) < ns.Seconds(2)),
        "has_cppyy": hasattr(ns, "cppyy"),
        "env": __import__("os").environ.get("CLING_STANDARD_PCH"),
    }))
""")


def run_child(tmp_path: Path, env_extra: dict[str, str] | None = None,
              drop: tuple[str, ...] = ()) -> tuple[dict, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NS3_UML_NO_PCH", "CLING_STANDARD_PCH", *drop)}
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-c", CHECK_NS3], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.fixture(scope="session")
def real_pch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real header in the ordinary cache, built here if it is missing."""
    result, _ = run_child(tmp_path_factory.mktemp("pch-build"))
    assert result["pch"], "ns-3 was loaded without the header"
    return Path(result["pch"])


def assert_ns3_works(result: dict) -> None:
    assert result["node_id"] >= 0
    assert result["fired"] == [1] and result["now"] == pytest.approx(2.0)
    assert result["calendar_type"] == _native.CALENDAR_TYPE
    assert result["same_ns"] and result["modules"] and result["has_cppyy"]
    assert result["time_compare"]


def test_ns3_works_with_the_header_and_reuses_it(real_pch, tmp_path):
    before = real_pch.stat()
    result, stderr = run_child(tmp_path)
    assert result["pch"] == str(real_pch) and result["marker"] == 1
    assert_ns3_works(result)
    assert result["env"] is None  # not left for child processes to inherit
    assert "building" not in stderr and "warning" not in stderr
    after = real_pch.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_unusable_cache_falls_back_with_one_warning(tmp_path):
    not_a_dir = tmp_path / "cache-file"
    not_a_dir.write_text("a file where the cache directory should be\n")
    result, stderr = run_child(tmp_path, {"NS3_UML_CACHE": str(not_a_dir)})
    assert result["pch"] is None and result["marker"] is None
    assert_ns3_works(result)
    warnings = [line for line in stderr.splitlines() if "ns3-uml" in line]
    assert len(warnings) == 1 and "without it" in warnings[0], stderr
