"""`mobilenets profile`: the table, the JSON, the entry point, and one-line errors with exit status 2."""

import json
import subprocess
import sys

import pytest

from mobilenets import __version__
from mobilenets.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's own exits (--version, argument errors)
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def test_json_reports_torchvision_parameter_count(capsys):
    code, out, err = run_cli(capsys, "profile", "mobilenet_v2", "--json")
    assert code == 0 and err == ""
    report = json.loads(out)
    assert report["params"] == 3_504_872  # torchvision's mobilenet_v2, 1000 classes
    assert report["params_no_bn"] == 3_470_760
    assert report["madds"] == 300_774_272
    assert (report["model"], report["width_mult"], report["input_size"]) == ("mobilenet_v2", 1.0, 224)
    assert report["madds"] == sum(layer["madds"] for layer in report["layers"])
    assert set(report["layers"][0]) == {"name", "kind", "output_shape", "params", "madds"}


def test_options_reach_the_model(capsys):
    _, out, _ = run_cli(capsys, "profile", "mobilenet_v1", "--no-separable", "--width", "0.5",
                        "--resolution", "128", "--num-classes", "10", "--json")
    report = json.loads(out)
    assert (report["width_mult"], report["input_size"], report["layers"][-1]["output_shape"]) == (0.5, 128, [10])
    _, separable, _ = run_cli(capsys, "profile", "mobilenet_v1", "--width", "0.5", "--resolution", "128",
                              "--num-classes", "10", "--json")
    assert json.loads(separable)["madds"] < report["madds"]
    _, minimal, _ = run_cli(capsys, "profile", "mobilenet_v3_small", "--minimal", "--json")
    assert json.loads(minimal)["params"] == 2_044_736  # timm's tf_mobilenetv3_small_minimal_100


def test_table_lists_layers_and_totals(capsys):
    code, out, _ = run_cli(capsys, "profile", "mobilenet_v3_small")
    assert code == 0
    lines = out.splitlines()
    assert lines[1].split() == ["layer", "kind", "output", "shape", "params", "MAdds"]
    assert any(line.startswith("head.fc ") and "1000" in line for line in lines)
    assert lines[-1] == ("total: params 2,542,856 (2.5M), params without BN 2,530,744 (2.5M), "
                         "MAdds 56,510,400 (56.5M)")


def test_version(capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"mobilenets {__version__}"


@pytest.mark.parametrize("argv", [
    ["profile", "mobilenet_v9"],
    ["profile", "mobilenet_v2", "--width", "0"],
    ["profile", "mobilenet_v2", "--width", "-1"],
    ["profile", "mobilenet_v2", "--width", "wide"],
    ["profile", "mobilenet_v2", "--resolution", "31"],
    ["profile", "mobilenet_v2", "--resolution", "224.5"],
    ["profile", "mobilenet_v2", "--num-classes", "-1"],
    ["profile", "mobilenet_v2", "--minimal"],
    ["profile", "mobilenet_v3_large", "--no-separable"],
    ["profile", "mobilenet_v1", "--dilated"],
    ["profile"],
    [],
], ids=lambda argv: " ".join(argv) or "no command")
def test_errors_are_one_line_with_status_2(capsys, argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.splitlines()) == 1 and err.startswith("mobilenets: error: ")
    assert "Traceback" not in err


def test_python_dash_m_entry_point():
    done = subprocess.run([sys.executable, "-m", "mobilenets", "profile", "mobilenet_v2", "--json"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["params"] == 3_504_872

