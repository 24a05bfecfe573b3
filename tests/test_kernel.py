"""The guest kernel: cache key, lookup, a real build, the project's patches."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from ns3_uml import host, kernel
from ns3_uml.kernel import (
    KernelBuildError,
    cache_dir,
    check_config,
    ensure_kernel,
    find_kernel,
    kernel_key,
    patch_files,
)



def test_cache_dir_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NS3_UML_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("NS3_UML_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "ns3-uml"


def test_key_is_stable_and_covers_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    key = kernel_key()
    assert re.fullmatch(r"[0-9a-f]{16}", key)
    assert kernel_key() == key
    monkeypatch.setattr(kernel, "KERNEL_BUILD_VERSION", kernel.KERNEL_BUILD_VERSION + 1)
    assert kernel_key() != key


def test_key_covers_patches(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key = kernel_key()
    extra = tmp_path / "9999-extra.patch"
    extra.write_text("--- a/x\n+++ b/x\n")
    monkeypatch.setattr(kernel, "patch_files", lambda: [*patch_files(), extra])
    assert kernel_key() != key


def test_find_kernel_honours_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "my-linux"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("NS3_UML_KERNEL", str(fake))
    assert find_kernel() == fake
    assert ensure_kernel(progress=False) == fake
    monkeypatch.setenv("NS3_UML_KERNEL", str(tmp_path / "missing"))
    with pytest.raises(KernelBuildError, match="NS3_UML_KERNEL"):
        find_kernel()


def test_find_kernel_empty_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NS3_UML_KERNEL", raising=False)
    monkeypatch.setenv("NS3_UML_CACHE", str(tmp_path))
    assert find_kernel() is None


def test_missing_packages_not_root(monkeypatch: pytest.MonkeyPatch) -> None:
    # The apt logic lives in ns3_uml.host; the kernel build goes through it.
    monkeypatch.setattr(host, "_verified", set())
    monkeypatch.setattr(host, "dpkg_status", lambda packages: {})
    monkeypatch.setattr(host.os, "geteuid", lambda: 1000)
    with pytest.raises(KernelBuildError) as info:
        kernel.build_kernel(progress=False)
    expected = "apt-get install -y " + " ".join(kernel.required_packages())
    assert expected in str(info.value)
    # One command installs everything: the build's packages and the guests'.
    assert set(host.DEFAULT_GUEST_PACKAGES) <= set(kernel.required_packages())
    assert set(kernel.BUILD_PACKAGES) <= set(kernel.required_packages())


def test_ensure_kernel_checks_guest_packages(monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path) -> None:
    fake = tmp_path / "my-linux"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("NS3_UML_KERNEL", str(fake))
    monkeypatch.setattr(host, "_verified", set())
    monkeypatch.setattr(host, "dpkg_status", lambda packages: {
        p: "1" for p in packages if p != "iperf3"})
    monkeypatch.setattr(host.os, "geteuid", lambda: 1000)
    with pytest.raises(KernelBuildError, match="apt-get install -y iperf3"):
        ensure_kernel(progress=False)


def test_check_config_reports_mismatch(tmp_path: Path) -> None:
    fragment = tmp_path / "frag"
    fragment.write_text("CONFIG_UML_TIME_TRAVEL_SUPPORT=y\n# CONFIG_HW_RANDOM is not set\n"
                        "CONFIG_KERNEL_STACK_ORDER=3\n")
    config = tmp_path / ".config"
    config.write_text("# CONFIG_UML_TIME_TRAVEL_SUPPORT is not set\nCONFIG_HW_RANDOM=y\n"
                      "CONFIG_KERNEL_STACK_ORDER=3\n")
    problems = check_config(fragment, config)
    assert len(problems) == 2
    assert "RAID6_PQ_BENCHMARK" in problems[0]
    assert "CONFIG_HW_RANDOM" in problems[1]
    config.write_text("CONFIG_UML_TIME_TRAVEL_SUPPORT=y\nCONFIG_KERNEL_STACK_ORDER=3\n")
    assert check_config(fragment, config) == []


def test_patches_apply_to_pristine_tree(tmp_path: Path) -> None:
    patches = patch_files()
    assert any("xsave" in p.name for p in patches)
    wanted = set()
    for patch in patches:
        wanted |= set(re.findall(r"^\+\+\+ b/(\S+)", patch.read_text(), re.M))
    # Only the touched files, straight from the source package's tarball.
    subprocess.run(["tar", "-xJf", str(kernel.SOURCE_TARBALL), "-C", str(tmp_path),
                    "--strip-components=1", "--wildcards",
                    *[f"*/{name}" for name in sorted(wanted)]], check=True)
    tree = tmp_path
    assert {str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file()} == wanted
    for patch in patches:
        subprocess.run(["patch", "-p1", "--dry-run", "--batch", "-i", str(patch)],
                       cwd=tree, check=True, capture_output=True)
        subprocess.run(["patch", "-p1", "--batch", "-i", str(patch)],
                       cwd=tree, check=True, capture_output=True)
    # Patch 0003: the guest's randomness comes from ns3uml.seed, never the host.
    archrandom = (tree / "arch/um/include/asm/archrandom.h").read_text()
    assert "os_getrandom" not in archrandom and "uml_seeded_random_longs" in archrandom
    assert "getrandom" not in (tree / "arch/um/os-Linux/util.c").read_text()
    assert '"ns3uml.seed="' in (tree / "arch/um/kernel/um_arch.c").read_text()
    regs = (tree / "arch/x86/um/os-Linux/registers.c").read_text()
    # The iov length must come from the host at run time, not from the buffer size.
    assert "iov.iov_len = host_fp_size;" in regs
    assert "iov.iov_len = FP_SIZE" not in regs


# The first test to need the kernel may have to build it (~5 min on 2 cores).
@pytest.mark.timeout(3600)
def test_built_kernel(uml_kernel: Path) -> None:
    assert uml_kernel == find_kernel()
    assert uml_kernel.parent.name == kernel_key()
    config = (uml_kernel.parent / "config").read_text()
    assert "CONFIG_UML_TIME_TRAVEL_SUPPORT=y" in config
    assert check_config(kernel.config_fragment(), uml_kernel.parent / "config") == []
    # No unpacked tree or temporary file left behind.
    assert not list((cache_dir() / "build").glob(f"{kernel_key()}.*"))
    assert not list(uml_kernel.parent.glob(".*tmp*"))
    out = subprocess.run([str(uml_kernel), "--version"], capture_output=True, text=True,
                         stdin=subprocess.DEVNULL, timeout=30)
    assert out.stdout.strip().startswith("6.12"), out


def test_second_ensure_is_immediate(uml_kernel: Path) -> None:
    t0 = time.monotonic()
    assert ensure_kernel(progress=False) == uml_kernel
    assert time.monotonic() - t0 < 2.0
