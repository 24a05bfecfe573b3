"""A guest that shrinks its memory file under its devices is an error naming it, and nothing
else is lost (docs/DESIGN.md rule 10); a SIGBUS anywhere else still ends the process.

Each case runs in a process of its own: without the devices' guard the SIGBUS kills that
process, which fails the test instead of ending this pytest.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from shrunk_memory_cases import CASES

CASE_FILE = Path(__file__).with_name("shrunk_memory_cases.py")


def _how(returncode: int) -> str:
    if returncode < 0:
        return f"died by {signal.Signals(-returncode).name}"
    return f"exit status {returncode}"


def run_cases(test: str, count: int) -> None:
    """A test of shrunk_memory_cases.py (its ``count`` cases) in a pytest of its own; every
    case must pass."""
    # Its own short base directory: the cases' socket paths must stay under 108 bytes.
    with tempfile.TemporaryDirectory(prefix="shrunk-", dir="/tmp") as base:
        r = subprocess.run([sys.executable, "-m", "pytest", f"{CASE_FILE}::{test}", "-q", "-s",
                            "-p", "no:cacheprovider", f"--basetemp={base}/t"],
                           capture_output=True, text=True, timeout=1500)
    assert r.returncode == 0 and re.search(rf"^{count} passed", r.stdout, re.M), (
        f"{test}: {_how(r.returncode)}\n{r.stdout[-8000:]}\n{r.stderr[-3000:]}")


@pytest.mark.timeout(1600)
def test_a_front_end_that_shrinks_its_memory() -> None:
    # One process for every case (loading ns-3 is what costs): a SIGBUS in any fails them.
    run_cases("test_a_guest_that_shrinks_its_memory_is_a_device_error", len(CASES))


@pytest.mark.timeout(1600)
def test_a_real_guest_whose_memory_file_shrinks(uml_kernel: Path) -> None:
    run_cases("test_a_real_guest_whose_memory_file_shrinks", 1)


# A guest's memory is mapped (the guard installed over whatever handled SIGBUS before), then
# a mapping that is no guest's loses its file and is touched.
_OTHER_FAULT = """
    import ctypes, faulthandler, mmap, os, signal, sys
    from ns3_uml import _native
    _native.load()
    import cppyy
    {before}
    ns3 = cppyy.gbl.ns3
    guest = os.memfd_create("guest")
    os.ftruncate(guest, 1 << 20)
    table = ns3.vhost.MemTable()
    table.nregions = 1
    region = table.regions[0]
    region.guestAddr = region.userAddr = 1 << 20
    region.size = 1 << 20
    memory = ns3.GuestMemory()
    assert memory.Map(table, cppyy.gbl.std.vector[int]([guest])) == b""
    other = os.memfd_create("other")
    os.ftruncate(other, 8192)
    view = mmap.mmap(other, 8192)
    os.ftruncate(other, 0)
    print("touching", flush=True)
    ctypes.c_char.from_buffer(view).value
    print("survived", flush=True)
"""

# what SIGBUS met before: (the code that set it up, what must come of the fault)
PREVIOUS = {
    # nothing: the process dies by SIGBUS, with a core as without the guard
    "default": ("signal.signal(signal.SIGBUS, signal.SIG_DFL)", "died by SIGBUS"),
    # Python's faulthandler: its traceback, then death by SIGBUS
    "faulthandler": ("faulthandler.enable()", "Fatal Python error: Bus error"),
    # cppyy's own (what a script has): its report, then it exits
    "cppyy": ("", "*** Break *** bus error"),
}


@pytest.mark.parametrize("previous", list(PREVIOUS))
def test_a_sigbus_outside_guest_memory_goes_where_it_went(previous: str) -> None:
    before, expected = PREVIOUS[previous]
    script = textwrap.dedent(_OTHER_FAULT.format(before=before))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=600)
    out = f"{_how(r.returncode)}\n{r.stdout}{r.stderr}"
    assert "touching" in r.stdout and "survived" not in r.stdout, out
    assert r.returncode != 0 and expected in out, out
