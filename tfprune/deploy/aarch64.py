"""Checking that a .tflite model gives the same outputs on aarch64 as on this x86 machine.

LiteRT's aarch64 wheel runs under qemu-user, inside a folder ("sysroot") holding Debian's
arm64 Python and the aarch64 wheels of `ai-edge-litert` and numpy at the host's versions.
The host quantizes the inputs once; both interpreters get the same raw tensors, and
their raw outputs are compared. Emulated timings mean nothing: this checks correctness only.

One-time setup as root on Debian 12 (what `make arm-check` does):

    apt-get install qemu-user
    dpkg --add-architecture arm64 && apt-get update

Example:

```python
runtime = LiteRTProcess.aarch64(build_sysroot(".arm64-sysroot"))
result = compare_with_host("pruned_int8.tflite", x_test[:1000], runtime)
result["raw_exact_match"], result["top1_agreement"]
```
"""

import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from tfprune.deploy import litert_runner
from tfprune.deploy.litert import LiteRTModel
from tfprune.deploy.parity import output_metrics
from tfprune.deploy.versions import versions
from tfprune.files import publish_directory

RUNNER = Path(litert_runner.__file__)
SYSROOT_PYTHON = "usr/bin/python3.11"  # Debian 12's Python, matching the cp311 wheels below
DEBIAN_PACKAGES = (
    "libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libexpat1", "libffi8", "libssl3",
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib",
)
# qemu-user shows the guest the host's x86 /proc/cpuinfo, on which LiteRT's CPU detection (cpuinfo)
# crashes at interpreter creation. qemu looks up guest paths under `-L` first, so the sysroot
# carries an aarch64 /proc/cpuinfo of the emulated cores; XNNPack picks its kernels from it
# (a Cortex-A53 given an A76's file would run dot-product instructions it lacks).
CPUINFO_CORE = """processor\t: {index}
BogoMIPS\t: 50.00
Features\t: {features}
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: {variant}
CPU part\t: {part}
CPU revision\t: {revision}

"""
CPU_PROFILES = {  # qemu -cpu name: what its /proc/cpuinfo says (as on the real cores)
    "cortex-a76": {"features": "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm "
                               "lrcpc dcpop asimddp", "variant": "0x4", "part": "0xd0b", "revision": "1"},
    "cortex-a53": {"features": "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid", "variant": "0x0",
                   "part": "0xd03", "revision": "4"},
}
DEFAULT_CPU = "cortex-a76"  # the sysroot's own /proc/cpuinfo; other CPUs get a view of it (`cpu_view`)
DEFAULT_SYSROOT = ".arm64-sysroot"  # where `make arm-check` builds it
WHEEL_PLATFORMS = ["manylinux2014_aarch64"] + [f"manylinux_2_{minor}_aarch64" for minor in range(17, 37)]


class LiteRTProcess:
    """LiteRT run by another Python process, given as a command prefix (e.g. qemu + an aarch64 Python).

    `LiteRTProcess([sys.executable])` runs the host's own LiteRT in a child process.
    """

    def __init__(self, command, env=None, name=None):
        self.command = [os.fspath(part) for part in command]
        self.env = env or {}
        self.name = name or self.command[0]

    @classmethod
    def aarch64(cls, sysroot, qemu="qemu-aarch64", cpu="cortex-a76"):
        """The aarch64 Python of a `build_sysroot` folder, run under qemu-user emulating `cpu`.

        The default, a Cortex-A76 (NEON with dot product, as in many Android phones), matches
        the sysroot's /proc/cpuinfo; "cortex-a53" (no dot product: low-end phones) sees one of its
        own. Avoid `cpu="max"` on qemu 7.2 (Debian 12): it enables SME, whose emulation there
        makes XNNPack's int8 results wrong (qemu 10.0 gets them right).
        """
        if cpu not in CPU_PROFILES:
            raise ValueError(f"No /proc/cpuinfo profile for cpu={cpu!r}: use one of {sorted(CPU_PROFILES)} (qemu 7.2 "
                             "emulates them; avoid 'max', whose SME makes XNNPack's INT8 results wrong on qemu 7.2).")
        sysroot = check_sysroot(sysroot)
        require_tool(qemu, "apt-get install qemu-user")
        root = cpu_view(sysroot, cpu)
        # OPENBLAS_NUM_THREADS: numpy's OpenBLAS would start guest threads of its own
        return cls([qemu, "-cpu", cpu, "-L", root, root / SYSROOT_PYTHON],
                   env={"PYTHONPATH": str(sysroot / "site"), "OPENBLAS_NUM_THREADS": "1"},
                   name=f"aarch64 {cpu} (qemu-user)")

    def run_script(self, script, args, timeout, emulator_options=()):
        """Runs the Python `script` with `args`; returns its `subprocess.CompletedProcess`.

        `emulator_options` go right after the first word of a command that starts with qemu (its own
        options, e.g. a plugin). A failure raises RuntimeError with the end of its stderr.
        """
        first, *rest = self.command
        cmd = [first, *emulator_options, *rest, os.fspath(script), *(os.fspath(a) for a in args)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **self.env})
        if done.returncode:
            raise RuntimeError(f"LiteRT on {self.name} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
        return done

    def run(self, model_path, raw_inputs, use_xnnpack=True, timeout=1800):
        """Raw outputs of the model for each raw input sample; returns (outputs, machine name)."""
        with tempfile.TemporaryDirectory(prefix="tfprune_litert_") as tmp:
            inputs, outputs = Path(tmp) / "inputs.npy", Path(tmp) / "outputs.npz"
            np.save(inputs, raw_inputs)
            flags = [] if use_xnnpack else ["--no-xnnpack"]
            self.run_script(RUNNER, [model_path, inputs, outputs, *flags], timeout)
            with np.load(outputs) as result:
                return result["outputs"], str(result["machine"])


def find_sysroot(sysroot="auto"):
    """The aarch64 sysroot to run on, or None: for "auto", $TFPRUNE_ARM_SYSROOT or ./.arm64-sysroot if it is a
    complete `build_sysroot` folder and qemu-aarch64 is on PATH; None stays None; a path is returned as given."""
    if sysroot != "auto":
        return None if sysroot is None else Path(sysroot)
    found = Path(os.environ.get("TFPRUNE_ARM_SYSROOT", DEFAULT_SYSROOT))
    return found if (found / ".complete").is_file() and shutil.which("qemu-aarch64") else None


def check_sysroot(sysroot):
    """The resolved path of `sysroot`; FileNotFoundError naming the fix unless it is a `build_sysroot` folder."""
    sysroot = Path(sysroot).resolve()
    if not (sysroot / SYSROOT_PYTHON).is_file() or not (sysroot / "site").is_dir():
        raise FileNotFoundError(f"'{sysroot}' is not an aarch64 sysroot: build it with build_sysroot('{sysroot}') "
                                "or make arm-check.")
    return sysroot


def compare_with_host(model_path, x, runtime, use_xnnpack=True):
    """Runs float samples `x` through the host's LiteRT and through `runtime`; compares the outputs.

    Returns a JSON-able dict: both machines, the sample count, the share of samples whose raw
    outputs are bit-identical, the largest raw difference (in quantized steps for integer
    outputs), the largest dequantized difference, the top-1 agreement and `parity.output_metrics`
    of the other machine's outputs against the host's ("metrics").
    """
    host = LiteRTModel.load(model_path, use_xnnpack=use_xnnpack)
    raw_inputs = np.concatenate([host.prepare(sample) for sample in np.asarray(x)])
    host_raw = litert_runner.run(os.fspath(model_path), raw_inputs, use_xnnpack)  # the far end's code, run here
    other_raw, machine = runtime.run(model_path, raw_inputs, use_xnnpack=use_xnnpack)
    if other_raw.shape != host_raw.shape:
        raise RuntimeError(f"{runtime.name} returned outputs of shape {other_raw.shape}, the host {host_raw.shape}.")
    host_out, other_out = host.dequantize(host_raw), host.dequantize(other_raw)
    raw_diff = np.abs(host_raw.astype(np.float64) - other_raw.astype(np.float64))
    flat = raw_diff.reshape(len(raw_diff), -1)
    return {
        "model": os.fspath(model_path),
        "host_machine": os.uname().machine,
        "other_machine": machine,
        "runtime": runtime.name,
        "xnnpack": use_xnnpack,
        "samples": len(raw_inputs),
        "output_dtype": str(host.output["dtype"].__name__),
        "raw_exact_match": float(np.mean(flat.max(axis=1) == 0)),
        "max_raw_diff": float(raw_diff.max()),
        "max_abs_diff": float(np.max(np.abs(host_out - other_out))),
        "top1_agreement": float(np.mean(np.argmax(host_out, -1) == np.argmax(other_out, -1))),
        "metrics": output_metrics(host_out, other_out, host.output["quantization"][0]),
        "versions": versions(),
    }


def build_sysroot(dest, packages=DEBIAN_PACKAGES):
    """Makes `dest` an aarch64 sysroot (Debian arm64 Python + aarch64 LiteRT wheels); returns its path.

    Reuses a complete sysroot. Needs `apt-get` with the arm64 architecture enabled, `dpkg` and pip
    access to PyPI. Builds into a temporary folder beside `dest`, so a failure leaves nothing behind.
    """
    dest = Path(dest).resolve()
    if (dest / ".complete").is_file():
        return dest
    for tool in ("apt-get", "dpkg"):
        require_tool(tool, "use a Debian 12 machine (or build the sysroot on one)")
    arches = subprocess.run(["dpkg", "--print-foreign-architectures"], capture_output=True, text=True).stdout.split()
    if "arm64" not in arches:
        raise RuntimeError("apt cannot fetch arm64 packages yet. As root run: "
                           "dpkg --add-architecture arm64 && apt-get update")
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        debs = work / "debs"
        debs.mkdir()
        print(f"downloading Debian arm64 packages: {' '.join(packages)}", flush=True)
        _run(["apt-get", "download", *(f"{p}:arm64" for p in packages)], cwd=debs)
        for deb in sorted(debs.glob("*.deb")):
            _run(["dpkg", "-x", str(deb), str(work)])
        shutil.rmtree(debs)
        (work / "proc").mkdir()
        (work / "proc" / "cpuinfo").write_text(_cpuinfo(DEFAULT_CPU))
        wheels = [f"ai-edge-litert=={importlib.metadata.version('ai-edge-litert')}", f"numpy=={np.__version__}"]
        print(f"installing aarch64 wheels: {' '.join(wheels)}", flush=True)
        platforms = [arg for tag in WHEEL_PLATFORMS for arg in ("--platform", tag)]
        _run([sys.executable, "-m", "pip", "install", "--quiet", "--target", str(work / "site"), *platforms,
              "--python-version", "3.11", "--implementation", "cp", "--only-binary=:all:", *wheels])
        (work / ".complete").write_text(" ".join(wheels) + "\n")
        publish_directory(work, dest)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return dest


def cpu_view(sysroot, cpu):
    """The sysroot as `cpu` (one of `CPU_PROFILES`) sees it: itself for the default CPU, else a folder of links to
    its entries with that CPU's /proc/cpuinfo."""
    if cpu == DEFAULT_CPU:
        return sysroot
    view, cpuinfo = sysroot / "cpus" / cpu, _cpuinfo(cpu)
    if (view / "proc" / "cpuinfo").is_file() and (view / "proc" / "cpuinfo").read_text() == cpuinfo:
        return view
    (sysroot / "cpus").mkdir(exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{cpu}.", dir=sysroot / "cpus"))
    try:
        for entry in sysroot.iterdir():
            if entry.name not in ("proc", "cpus"):
                (partial / entry.name).symlink_to(entry)
        (partial / "proc").mkdir()
        (partial / "proc" / "cpuinfo").write_text(cpuinfo)
        publish_directory(partial, view)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return view


def _cpuinfo(cpu):
    cores = os.cpu_count() or 1  # qemu passes the host's /sys through: match its CPU count
    return "".join(CPUINFO_CORE.format(index=i, **CPU_PROFILES[cpu]) for i in range(cores))


def require_tool(name, fix):
    if shutil.which(name) is None:
        raise FileNotFoundError(f"'{name}' not found on PATH: {fix}.")


def _run(cmd, cwd=None):
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"`{' '.join(cmd[:3])} ...` failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
