"""PyTorch models through ExecuTorch's Arm Ethos-U flow, for real: no mocks of ExecuTorch or Vela.

Inner sessions (pytester) define small modules and gate them on ethos-u65-256.  These tests
need the pinned PyTorch stack (``pip install -e ".[test,pytorch]"``).  Without it they skip
locally, and fail under CI (``CI=true``), where ``.ci/run`` installs it: they must not
silently disappear from CI.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

STACK = all(importlib.util.find_spec(name) is not None for name in ("torch", "executorch", "torchao"))
if not STACK and os.environ.get("CI") == "true":
    pytest.fail('CI=true but the PyTorch stack is not installed: .ci/run installs it with '
                'pip install -e ".[test,pytorch]"', pytrace=False)
pytestmark = pytest.mark.skipif(not STACK, reason='needs the PyTorch stack: pip install -e ".[test,pytorch]"')
if STACK:
    # pytester's in-process runs restore sys.modules afterwards; torch's C extension cannot be
    # imported a second time in a process, so import the whole stack out here, once
    from pytest_ethosu import pytorch

    pytorch.preload()

U65 = 'accelerator="ethos-u65-256", system_config="Ethos_U65_High_End", memory_mode="Dedicated_Sram"'

# An inner test file: its network's first convolution is WIDTH channels wide, and MID selects
# what sits between the two halves (nothing, or torch.where, which U55/U65's TOSA profile
# leaves to the CPU).  Both are read from files, so the source lines never move.
NET = f'''
import pathlib

import torch

WIDTH = int(pathlib.Path(__file__).with_name("width.txt").read_text())
MID = pathlib.Path(__file__).with_name("mid.txt").read_text().strip()


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, WIDTH, 3, padding=1)
        self.c2 = torch.nn.Conv2d(WIDTH, 16, 3, stride=2, padding=1)
        self.c3 = torch.nn.Conv2d(16, 16, 3, padding=1)

    def forward(self, x):
        x = torch.relu(self.c2(torch.relu(self.c1(x))))
        if MID == "where":
            x = torch.where(x > 0.5, x, x * 0.25)
        return torch.relu(self.c3(x))


def inputs():
    torch.manual_seed(0)
    return (torch.randn(1, 3, 16, 16),)


def test_net(ethosu_perf):
    torch.manual_seed(1)
    ethosu_perf(Net(), inputs(), {U65})
'''


@pytest.fixture
def net(project: pytest.Pytester) -> pytest.Pytester:
    project.makepyfile(test_net=NET)
    (project.path / "width.txt").write_text("8")
    (project.path / "mid.txt").write_text("none")
    return project


def test_wider_layer_fails_by_module_path_update_accepts(net: pytest.Pytester) -> None:
    net.runpytest("-p", "no:xdist", "--ethosu-update").assert_outcomes(passed=1)
    baseline = net.path / "baselines" / "test_net" / "test_net" / "default.json"
    assert '"module": "c1"' in baseline.read_text() and '"source": "test_net.py:17"' in baseline.read_text()
    (net.path / "width.txt").write_text("24")
    result = net.runpytest("-p", "no:xdist")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*CheckFailed: ethosu: Net on ethos-u65-256: network total_cycles +*",
                                 "*c1 (test_net.py:17) tosa_rescale_default*Conv2D*cycles*"])
    net.runpytest("-p", "no:xdist", "--ethosu-update").assert_outcomes(passed=1)
    again = net.runpytest("-p", "no:xdist")
    again.assert_outcomes(passed=1)
    again.stdout.fnmatch_lines(["*Vela ran 0 time(s), 1 answered from the cache*",
                                "*ExecuTorch lowered 0 PyTorch program(s) to TOSA, 1 answered from the cache*"])


def test_cpu_fallback_fails_naming_the_operator(net: pytest.Pytester) -> None:
    net.runpytest("-p", "no:xdist", "--ethosu-update").assert_outcomes(passed=1)
    (net.path / "mid.txt").write_text("where")
    result = net.runpytest("-p", "no:xdist", "-v")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines_random(["*work moved from the NPU to the CPU: 2 layer(s) now run on the CPU*",
                                 "*Net (test_net.py:19) aten_where_self*aten.where.self*to cpu*",
                                 "*cpu fallback: * operator(s) on the CPU: *aten.where.self*",
                                 "*reasons: *Had torch.bool input aten_gt_tensor that is not supported by TOSA*"])
    assert "TOSA partition 2 of 2" not in result.stdout.str()  # the partitions estimate fine
    net.runpytest("-p", "no:xdist", "--ethosu-update").assert_outcomes(passed=1)
    record = net.runpytest("-p", "no:xdist")
    record.assert_outcomes(passed=1)
    record.stdout.fnmatch_lines(["test_net*Net*ethos-u65-256*/2*ok"])  # 2 partitions' ops / 2 CPU ops


def test_xdist_pt2_calibration_and_prequantised(project: pytest.Pytester) -> None:
    """Under -n 2: a .pt2 program, a calibration iterable, a pre-quantised program with
    quantize=False, and estimate() next to checks; the second run is answered from the cache."""
    project.makepyfile(test_forms=f'''
        import torch

        class Small(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
                self.head = torch.nn.Conv2d(8, 8, 1)

            def forward(self, x):
                return self.head(torch.relu(self.conv(x)))

        def make():
            torch.manual_seed(0)
            return Small().eval(), (torch.randn(1, 3, 16, 16),)

        def test_pt2(ethosu_perf, tmp_path_factory):
            module, inputs = make()
            path = tmp_path_factory.getbasetemp() / "small.pt2"
            torch.export.save(torch.export.export(module, inputs), path)
            result = ethosu_perf(str(path), {U65})
            assert result.layers[2].module == "conv" and result.cpu_ops == 0

        def test_calibration(ethosu_perf):
            module, inputs = make()
            batches = [(torch.randn(1, 3, 16, 16),) for _ in range(3)]
            result = ethosu_perf(module, inputs, calibration=batches, {U65})
            assert result.target["partitions"] == 1
            # the model's identity is the exported program's, whatever the target and releases
            from pytest_ethosu import pytorch
            other = ethosu_perf.estimate(module, inputs, accelerator="ethos-u55-128")
            assert other.model_sha256 == result.model_sha256
            assert result.model_sha256 == pytorch.program_identity(torch.export.export(module, inputs))
            # the same source in two checkouts: one identity (no absolute paths), two lowering keys
            exports = []
            for where in ("/one/checkout/net.py", "/another/checkout/net.py"):
                space = {{"torch": torch}}
                exec(compile("class Net(torch.nn.Conv2d):\\n    def forward(self, x):\\n"
                             "        return torch.relu(super().forward(x))\\n", where, "exec"), space)
                torch.manual_seed(0)
                exports.append(torch.export.export(space["Net"](3, 8, 3).eval(), inputs))
            (one, key_one), (another, key_another) = map(pytorch.program_digests, exports)
            assert one == another and key_one != key_another
            assert result.frameworks == pytorch.versions() and result.frameworks["executorch"][0].isdigit()
            # the advice is the built-in rules' over the merged result, as for any other input
            from pytest_ethosu import advisor
            target, estimator = ethosu_perf.target({U65}), ethosu_perf._session.estimator
            assert result.findings and result.findings == tuple(
                advisor.advise(result, lambda data: estimator.verify(data, target)))

        def test_prequantised(ethosu_perf):
            from executorch.backends.arm.ethosu import EthosUCompileSpec
            from executorch.backends.arm.quantizer import EthosUQuantizer, get_symmetric_quantization_config
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

            module, inputs = make()
            quantizer = EthosUQuantizer(EthosUCompileSpec("ethos-u65-256"))
            quantizer.set_global(get_symmetric_quantization_config())
            graph = prepare_pt2e(torch.export.export(module, inputs).module(), quantizer)
            graph(*inputs)
            program = torch.export.export(convert_pt2e(graph), inputs)
            result = ethosu_perf.estimate(program, inputs, quantize=False, {U65})
            assert result.total_cycles > 0 and result.model == "ExportedProgram"
    ''')
    first = project.runpytest("-n", "2", "--ethosu-update")
    first.assert_outcomes(passed=3)
    stored = json.loads((project.path / "baselines" / "test_forms" / "test_calibration" / "default.json").read_text())
    assert stored["estimator"]["frameworks"] == pytorch.versions()
    second = project.runpytest("-n", "2")
    second.assert_outcomes(passed=3)
    second.stdout.fnmatch_lines(["*Vela ran 0 time(s), * answered from the cache*",
                                 "*ExecuTorch lowered 0 PyTorch program(s) to TOSA, 4 answered from the cache*"])


def test_without_the_extra_one_test_fails_naming_it(project: pytest.Pytester) -> None:
    """ExecuTorch missing (hidden from imports in a subprocess): the PyTorch test fails with the
    extra's name; the .tflite test in the same session passes."""
    project.makeconftest("""
        import sys
        sys.modules["executorch"] = None  # as if the pytorch extra were not installed
    """)
    project.makepyfile(test_mixed="""
        import torch

        def test_module(ethosu_perf):
            ethosu_perf.estimate(torch.nn.Conv2d(3, 8, 3), (torch.randn(1, 3, 8, 8),))

        def test_tflite(ethosu_perf):
            ethosu_perf.estimate("models/base.tflite")
    """)
    result = project.runpytest_subprocess("-p", "no:xdist")
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(['*ModelError: estimating a PyTorch model needs ExecuTorch*'
                                 'pip install "pytest-ethosu?pytorch?"*'])
    assert "Traceback" not in result.stdout.str()


def test_arguments_for_pytorch_only(project: pytest.Pytester) -> None:
    project.makepyfile(test_args="""
        def test_tflite_with_inputs(ethosu_perf):
            ethosu_perf.estimate("models/base.tflite", (1, 2))
    """)
    result = project.runpytest("-p", "no:xdist")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*ArgumentError: example_inputs, calibration and quantize are for PyTorch models*"])


def test_seed_example_runs(tmp_path: Path) -> None:
    """examples/pytorch, run as a user runs it, against its committed baselines: the figures
    the README quotes."""
    source = Path(__file__).resolve().parent.parent / "examples" / "pytorch"
    project = tmp_path / "pytorch"
    shutil.copytree(source, project, ignore=shutil.ignore_patterns(".pytest_cache", "__pycache__"))
    before = {p: p.read_bytes() for p in sorted((project / "baselines").rglob("*.json"))}
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:xdist", "-s",
                          f"--ethosu-json={tmp_path / 'report.json'}"],
                         cwd=project, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert ("third convolution (conv3, seed_net.py:25): 90ch 1060650 cycles at 90.9% utilisation, "
            "96ch 1060650 cycles at 97.0%") in out
    assert "-> 96 channels: same cycles, +6.7% MACs (MAC utilisation 90.9% -> 97.0%)" in out
    assert "1 passed" in out and "REGRESSED" not in out and "MISSING" not in out
    assert {p: p.read_bytes() for p in sorted((project / "baselines").rglob("*.json"))} == before
    # made in another checkout and venv: still the same model (its identity holds no paths)
    estimates = json.loads((tmp_path / "report.json").read_text())["estimates"]
    assert [(e["status"], e["comparison"]["model_changed"]) for e in estimates] == [("ok", False)] * 2


# A module for the comparison with ExecuTorch's own flow: seeded construction, inputs and
# calibration, so that both flows quantise it alike; one delegated partition.
SMALL_NET = '''
import torch


class SmallNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.dw = torch.nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = torch.nn.Conv2d(16, 24, 1)
        self.head = torch.nn.Linear(24 * 16 * 16, 10)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.pw(torch.relu(self.dw(x))))
        return self.head(torch.flatten(x, 1))


def network():
    torch.manual_seed(0)
    return SmallNet().eval()


def example_inputs():
    torch.manual_seed(1)
    return (torch.randn(1, 3, 32, 32),)


def calibration():
    torch.manual_seed(2)
    return [(torch.randn(1, 3, 32, 32),) for _ in range(4)]
'''

# ExecuTorch's own Arm Ethos-U flow, as its documentation builds it (EthosUCompileSpec with only
# the accelerator, EthosUQuantizer, to_edge_transform_and_lower with EthosUPartitioner), Vela run
# by ExecuTorch with --verbose-performance, its output kept in the intermediates directory.  In
# a subprocess: ExecuTorch runs Vela's C++ core in its own process.
EXECUTORCH_FLOW = '''
import sys
from pathlib import Path

import torch
from executorch.backends.arm.ethosu import EthosUCompileSpec, EthosUPartitioner
from executorch.backends.arm.quantizer import EthosUQuantizer, get_symmetric_quantization_config
from executorch.exir import to_edge_transform_and_lower
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

from small_net import calibration, example_inputs, network

for accelerator in sys.argv[2:]:
    module, inputs, batches = network(), example_inputs(), calibration()
    spec = EthosUCompileSpec(accelerator, extra_flags=["--verbose-performance"])
    spec.dump_intermediate_artifacts_to(str(Path(sys.argv[1]) / accelerator))
    quantizer = EthosUQuantizer(spec)
    quantizer.set_global(get_symmetric_quantization_config())
    graph = prepare_pt2e(torch.export.export(module, inputs).module(check_guards=False), quantizer)
    with torch.no_grad():
        for batch in batches:
            graph(*batch)
    program = torch.export.export(convert_pt2e(graph), inputs)
    print(f"=== {accelerator}", flush=True)
    to_edge_transform_and_lower(program, partitioner=[EthosUPartitioner(spec)])
    sys.stdout.flush()
'''

ACCELERATORS = ("ethos-u55-128", "ethos-u65-256", "ethos-u85-256")


def test_accelerator_alone_gives_what_executorch_builds(project: pytest.Pytester, tmp_path: Path) -> None:
    """With only ``accelerator=``, a PyTorch model is estimated on the system ExecuTorch's
    compile spec builds for (ethos-u65-256: Ethos_U65_High_End, Dedicated_Sram_384KB; not Vela's
    own default, Ethos_U65_Client_Server), and every figure Vela reports, network and per layer,
    equals what Vela wrote when ExecuTorch's own flow ran it on U55, U65 and U85."""
    from pytest_ethosu.result import EstimateResult
    from tests.cli import differences, read_cli_outputs

    flow = tmp_path / "flow"
    flow.mkdir()
    (flow / "small_net.py").write_text(SMALL_NET)
    (flow / "executorch_flow.py").write_text(EXECUTORCH_FLOW)
    theirs = subprocess.run([sys.executable, "executorch_flow.py", str(tmp_path / "out"), *ACCELERATORS],
                            cwd=flow, capture_output=True, text=True, timeout=900)
    assert theirs.returncode == 0, theirs.stdout[-3000:] + theirs.stderr[-3000:]
    consoles = dict(part.split("\n", 1) for part in theirs.stdout.split("=== ")[1:])

    project.makepyfile(small_net=SMALL_NET)
    project.makepyfile(test_flow=f'''
        import json
        import pytest
        from small_net import calibration, example_inputs, network

        @pytest.mark.parametrize("accelerator", {list(ACCELERATORS)!r})
        def test_estimate(ethosu_perf, accelerator):
            result = ethosu_perf.estimate(network(), example_inputs(), calibration=calibration(),
                                          accelerator=accelerator)
            with open(f"{{accelerator}}.json", "w") as f:
                json.dump(result.to_dict(), f)
    ''')
    project.runpytest("-p", "no:xdist", "-p", "no:cacheprovider").assert_outcomes(passed=3)
    systems = {}
    for accelerator in ACCELERATORS:
        ours = EstimateResult.from_dict(json.loads((project.path / f"{accelerator}.json").read_text()))
        vela = read_cli_outputs(tmp_path / "out" / accelerator / "output", "out", consoles[accelerator],
                                compiled="_vela.npz")
        assert ours.target["partitions"] == 1 and len(ours.layers) > 4
        # two differences by design: ExecuTorch has Vela write its raw format (--output-format=raw),
        # not a .tflite, so the optimised model's size differs; the plugin renumbers the "#N"
        # names Vela generates within the model (they count what the process compiled before)
        by_design = re.compile(r"optimised_model_size |layer \d+ Name: '#\d+' vs '#\d+'$")
        assert [d for d in differences(ours, vela) if not by_design.match(d)] == [], accelerator
        systems[accelerator] = (ours.target["system_config"], ours.target["memory_mode"])
    assert systems == {"ethos-u55-128": ("Ethos_U55_High_End_Embedded", "Shared_Sram"),
                       "ethos-u65-256": ("Ethos_U65_High_End", "Dedicated_Sram_384KB"),
                       "ethos-u85-256": ("Ethos_U85_SYS_DRAM_Mid", "Sram_Only")}


def test_a_first_run_prints_only_the_plugins_lines(project: pytest.Pytester) -> None:
    """A new PyTorch repository's first run (a fresh process, so the stack is imported inside
    the session): what torch, torchao and ExecuTorch log and warn while the plugin imports,
    quantises and lowers stays out of the terminal and pytest's warnings summary; when the test
    fails for another reason, it is shown with Vela's console."""
    project.makepyfile(small_net=SMALL_NET)
    project.makeini("[pytest]\npythonpath = .\n")
    project.makepyfile(test_small='''
        from small_net import calibration, example_inputs, network

        def test_small(ethosu_perf):
            ethosu_perf(network(), example_inputs(), calibration=calibration(), accelerator="ethos-u55-128")

        def test_broken(ethosu_perf):
            import warnings
            import torch
            class Loud(torch.nn.Module):
                def forward(self, x):
                    warnings.warn("a warning from the user's module while it is exported")
                    return torch.relu(x)
            ethosu_perf.estimate(Loud().eval(), (torch.randn(1, 4),), accelerator="ethos-u55-128")
            assert False, "after the estimate"
    ''')
    result = project.runpytest_subprocess("-p", "no:xdist", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    assert "Captured log" not in out and "warnings summary" not in out and "DEBUG" not in out, out
    assert "torch/utils/_pytree.py" not in out and "Captured stderr" not in out, out
    # the other failure shows what the lowering said, with Vela's console
    section = out[out.index("Captured Vela output"):]
    assert "--- torch.export ---\nUserWarning: a warning from the user's module while it is exported" in section
    # nor with pytest's log capture at DEBUG: ExecuTorch logs its graph dumps on the root logger
    debug = project.runpytest_subprocess("-p", "no:xdist", "-p", "no:cacheprovider", "--ethosu-no-cache",
                                         "--log-level=DEBUG", "-k", "not broken")
    debug.assert_outcomes(failed=1)
    stack = re.compile(r"^(DEBUG|INFO|WARNING|ERROR) +(root|torch|torchao|executorch)[.:]")
    assert not [line for line in debug.stdout.lines if stack.match(line)], debug.stdout.str()
    assert "backend_api.py" not in debug.stdout.str()


def test_a_module_built_differently_each_run_is_named(project: pytest.Pytester) -> None:
    """(In fresh processes, as runs are.)  A module whose weights (or calibration data) come out
    differently on each run: the
    failure, and the summary even when the figures happen to pass, say which of the two differs
    from the baseline's and how to pin it; a change of the graph itself is a changed model."""
    project.makepyfile(test_seeds='''
        import pathlib
        import torch

        def test_net(ethosu_perf):
            WEIGHTS, CALIBRATION, WIDTH, RTOL = map(int, pathlib.Path(__file__).with_name("seeds.txt").read_text().split())
            torch.manual_seed(WEIGHTS)
            module = torch.nn.Sequential(torch.nn.Conv2d(3, WIDTH, 3, padding=1), torch.nn.ReLU()).eval()
            torch.manual_seed(CALIBRATION)
            batches = [(torch.randn(1, 3, 16, 16),) for _ in range(2)]
            ethosu_perf(module, batches[0], calibration=batches, accelerator="ethos-u55-128", rtol=RTOL)
    ''')
    seeds = project.path / "seeds.txt"
    seeds.write_text("0 0 8 100")
    project.runpytest_subprocess("-p", "no:xdist", "--ethosu-update").assert_outcomes(passed=1)
    note = "test_seeds.py::test_net: the model is not the one the baseline was made from: "
    seeds.write_text("1 0 8 100")
    weights = project.runpytest_subprocess("-p", "no:xdist")
    weights.assert_outcomes(passed=1)  # within rtol=100: the check passes; the summary still says it
    weights.stdout.fnmatch_lines([note + "its weights differ from the baseline's though its graph is the same: a "
                                  "module built without a fixed seed gets new weights on every run; call "
                                  "torch.manual_seed(...) before building it, or load saved weights"])
    seeds.write_text("0 1 8 100")
    calibration = project.runpytest_subprocess("-p", "no:xdist")
    calibration.stdout.fnmatch_lines([note + "its calibration data differ from the baseline's, so it is quantised "
                                      "differently: make them with a fixed seed or commit them; its example inputs "
                                      "differ from the baseline's: make them with a fixed seed"])
    assert "weights differ" not in calibration.stdout.str()
    seeds.write_text("0 0 16 0")  # another graph: a changed model, nothing to pin
    wider = project.runpytest_subprocess("-p", "no:xdist")
    wider.assert_outcomes(failed=1)
    assert "the baseline was made from" not in wider.stdout.str()
    wider.stdout.fnmatch_lines(["the model changed since the baseline was made"])
