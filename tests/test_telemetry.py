"""gpuad.devices.info() and ``python -m gpuad info``: GPU facts through nvidia-ml-py
(a fake ``pynvml`` here), and a clear ``gpu_status`` where there is no GPU."""
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

import gpuad as ad
from gpuad.devices import telemetry

ROOT = Path(__file__).resolve().parent.parent


class NVMLError(Exception):
    pass


def fake_pynvml(gpus=2, init_error=None, unsupported=()):
    """A stand-in for nvidia-ml-py: ``gpus`` H100s, or nvmlInit raising ``init_error``;
    the functions named in ``unsupported`` raise as NVML does for NotSupported."""
    m = types.ModuleType("pynvml")
    m.NVMLError = NVMLError
    m.calls = []

    def api(name, result):
        def fn(*args):
            m.calls.append(name)
            if name in unsupported:
                raise NVMLError("Not Supported")
            return result(*args) if callable(result) else result
        setattr(m, name, fn)

    def init():
        m.calls.append("nvmlInit")
        if init_error is not None:
            raise init_error
    m.nvmlInit = init
    api("nvmlShutdown", None)
    api("nvmlSystemGetDriverVersion", "550.54.15")
    api("nvmlSystemGetCudaDriverVersion", 12040)
    api("nvmlDeviceGetCount", gpus)
    api("nvmlDeviceGetHandleByIndex", lambda i: ("handle", i))
    api("nvmlDeviceGetName", lambda h: b"NVIDIA H100 80GB HBM3" if h[1] == 0 else "NVIDIA H100 PCIe")
    api("nvmlDeviceGetCudaComputeCapability", (9, 0))
    api("nvmlDeviceGetMemoryInfo", lambda h: types.SimpleNamespace(
        used=(h[1] + 1) * 2**30, total=80 * 2**30, free=(79 - h[1]) * 2**30))
    api("nvmlDeviceGetUtilizationRates", lambda h: types.SimpleNamespace(gpu=37 + h[1], memory=12))
    api("nvmlDeviceGetPowerUsage", 123456)  # milliwatts
    api("nvmlDeviceGetEnforcedPowerLimit", 700000)
    api("nvmlDeviceGetPowerManagementLimit", 650000)
    return m


def test_gpu_values_are_reported(monkeypatch):
    fake = fake_pynvml(gpus=2)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    facts = ad.devices.info()
    assert facts["gpu_status"] == "ok"
    assert len(facts["gpus"]) == 2
    g0, g1 = facts["gpus"]
    assert g0 == {"index": 0, "name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0",
                  "memory_used": 2**30, "memory_total": 80 * 2**30, "utilization": 37,
                  "memory_utilization": 12, "power_draw": 123.456, "power_limit": 700.0,
                  "driver_version": "550.54.15", "cuda_driver_version": "12.4"}
    assert g1["index"] == 1 and g1["name"] == "NVIDIA H100 PCIe" and g1["memory_used"] == 2 * 2**30
    assert fake.calls[0] == "nvmlInit" and fake.calls[-1] == "nvmlShutdown"
    json.dumps(facts)  # serialisable as it is
    report = telemetry.format_info(facts)
    assert "NVIDIA H100 80GB HBM3" in report and "compute capability 9.0" in report
    assert "1.00 GiB used of 80.00 GiB" in report and "37%" in report
    assert "123.5 W of 700.0 W" in report and "550.54.15" in report and "CUDA 12.4" in report


def test_unsupported_fields_are_none_not_errors(monkeypatch):
    fake = fake_pynvml(gpus=1, unsupported={"nvmlDeviceGetPowerUsage", "nvmlDeviceGetEnforcedPowerLimit",
                                            "nvmlDeviceGetUtilizationRates"})
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    (g,) = ad.devices.info()["gpus"]
    assert g["power_draw"] is None and g["utilization"] is None
    assert g["power_limit"] == 650.0  # the fallback query
    assert g["memory_total"] == 80 * 2**30
    assert "power ? of 650.0 W" in telemetry.format_info(ad.devices.info())


def test_nvml_init_failure_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(init_error=NVMLError("Driver Not Loaded")))
    facts = ad.devices.info()
    assert facts["gpus"] == []
    assert facts["gpu_status"].startswith("NVML could not start: Driver Not Loaded")
    assert "cpu" in facts["devices"]
    assert "NVML could not start" in telemetry.format_info(facts)


def test_no_gpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus=0))
    facts = ad.devices.info()
    assert facts["gpus"] == [] and facts["gpu_status"] == "no NVIDIA GPU found"


def test_nvml_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml raises ImportError
    facts = ad.devices.info()
    assert facts["gpus"] == []
    assert facts["gpu_status"].startswith("nvidia-ml-py is not installed: pip install 'gpuad[cuda13]'")


def test_real_machine():
    facts = ad.devices.info()
    cpu = facts["cpu"]
    assert cpu["threads"] == os.cpu_count() and cpu["model"] and cpu["numpy"]
    assert facts["gpuad"] == ad.__version__
    assert facts["devices"] == ad.devices.available() and "cpu" in facts["devices"]
    if facts["gpus"]:
        assert facts["gpu_status"] == "ok"
        assert all(g["memory_total"] > 0 for g in facts["gpus"])
    else:  # this machine has no GPU (or no NVML): info() says why instead of failing
        assert facts["gpu_status"] != "ok" and facts["gpu_status"]
    json.dumps(facts)


def test_nvml_is_not_imported_with_gpuad():
    code = "import sys, gpuad; print('pynvml' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


def test_cpu_model_from_proc_cpuinfo(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel\t\t: 143\n"
                 "model name\t: Intel(R) Xeon(R) Platinum 8480+\n")
    assert telemetry._cpu_model(str(f)) == "Intel(R) Xeon(R) Platinum 8480+"
    assert telemetry._cpu_model(str(tmp_path / "missing"))  # falls back to the platform


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "gpuad", "info", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_info_is_a_readable_report():
    r = _cli()
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("gpuad ") and "CPU" in r.stdout and "cpu" in r.stdout
    assert "GPU" in r.stdout
    with pytest.raises(ValueError):
        json.loads(r.stdout)


def test_cli_info_json():
    r = _cli("--json")
    assert r.returncode == 0, r.stderr
    facts = json.loads(r.stdout)
    assert "cpu" in facts["devices"] and facts["cpu"]["threads"] >= 1 and "gpu_status" in facts
