"""The command line: outputs, exit codes, one-line errors, --debug tracebacks."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore.cli import commands
from weightstore.cli.main import build_parser, main


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "weightstore.cli.main", *argv],
                          capture_output=True, text=True)


def test_inspect_lists_the_reference(sample_weight_path: Path, capsys) -> None:
    assert main(["inspect", str(sample_weight_path)]) == 0
    out = capsys.readouterr().out
    assert "6 tensors, 45,360 values" in out and "pickle, 181,853 bytes" in out
    assert "784x50" in out and "39,200" in out


def test_inspect_json(sample_weight_path: Path, capsys) -> None:
    assert main(["inspect", str(sample_weight_path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["tensor_count"] == 6 and info["total_values"] == 45_360
    assert {t["name"]: t["shape"] for t in info["tensors"]}["W1"] == [784, 50]


def test_formats_lists_every_codec(capsys) -> None:
    assert main(["formats", "--json"]) == 0
    listed = {f["name"] for f in json.loads(capsys.readouterr().out)}
    assert listed == {c.name for c in ws.formats()}


# A one-tensor format cannot hold the book's network (several tensors): see test_codecs.py.
@pytest.mark.parametrize("ext", sorted({c.extensions[0] for c in ws.formats()
                                        if not c.single_tensor and c.writable} | {".csv.zst"}))
def test_eval_prints_the_books_accuracy_in_every_format(
    ext: str, tmp_path: Path, sample_weight_path: Path, data_dir: Path, capsys
) -> None:
    path = tmp_path / f"w{ext}"
    assert main(["convert", str(sample_weight_path), str(path), "-q"]) == 0
    assert main(["eval", str(path), "--data-dir", str(data_dir)]) == 0
    assert "accuracy 0.9352" in capsys.readouterr().out


def test_errors_are_one_line_with_exit_1_and_traceback_only_on_debug(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "weightstore.json", "version": 1, "tensors": [1]}')
    r = run("inspect", str(bad))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("weightstore: error: ")
    assert "bad.json" in r.stderr and "Traceback" not in r.stderr
    r = run("--debug", "inspect", str(bad))
    assert r.returncode == 1 and "Traceback" in r.stderr and "FormatError" in r.stderr
    r = run("inspect", str(bad), "--debug")
    assert "Traceback" in r.stderr


def test_usage_errors_exit_2() -> None:
    assert run("convert").returncode == 2
    assert run("no-such-command").returncode == 2


def test_convert_options_and_unknown_options(tmp_path: Path, capsys) -> None:
    src = tmp_path / "w.npz"
    ws.save({"a": np.zeros(1000)}, src)
    assert main(["convert", str(src), str(tmp_path / "w.h5"), "-o", "compression=gzip"]) == 0
    assert "wrote" in capsys.readouterr().out
    assert main(["convert", str(src), str(tmp_path / "x.h5"), "-o", "compresion=gzip"]) == 1
    err = capsys.readouterr().err
    assert "compresion" in err and "compression" in err
    assert main(["convert", str(src), str(tmp_path / "x.h5"), "-o", "oops"]) == 1
    assert "KEY=VALUE" in capsys.readouterr().err
    assert not (tmp_path / "x.h5").exists()


def test_convert_onto_itself_is_refused(tmp_path: Path, capsys) -> None:
    src = tmp_path / "w.npz"
    ws.save({"a": np.zeros(3)}, src)
    assert main(["convert", str(src), str(src)]) == 1
    assert "same file" in capsys.readouterr().err


def test_missing_data_says_where_it_looked(tmp_path: Path, monkeypatch, capsys,
                                           sample_weight_path: Path) -> None:
    import net.data

    def no_network(url, dest, max_bytes):
        raise OSError("network unreachable")

    monkeypatch.setattr(net.data, "_download", no_network)
    monkeypatch.setattr(net.data, "_checkout_sibling", lambda: tmp_path / "nowhere")
    monkeypatch.setenv("WEIGHTSTORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("WEIGHTSTORE_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    from weightstore.lab import evaluate

    evaluate._cached_test_set.cache_clear()
    (tmp_path / "empty").mkdir()  # an explicit --data-dir must exist (issue 15)
    try:
        assert main(["eval", str(sample_weight_path), "--data-dir", str(tmp_path / "empty")]) == 1
    finally:
        evaluate._cached_test_set.cache_clear()
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(tmp_path / "empty") in err and "WEIGHTSTORE_DATA" in err


def test_schema_command_prints_the_shipped_schema(capsys) -> None:
    from weightstore.schema import json_schema

    assert main(["schema", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == json_schema()


def test_test_image_command_writes_784_pixels(tmp_path: Path, data_dir: Path, capsys) -> None:
    out = tmp_path / "img.csv"
    assert main(["test-image", "0", str(out), "--data-dir", str(data_dir)]) == 0
    assert "label 7" in capsys.readouterr().out
    lines = out.read_text().splitlines()
    assert len(lines) == 785
    assert main(["test-image", "10000", str(out), "--data-dir", str(data_dir)]) == 1
    assert "0 to 9999" in capsys.readouterr().err


def test_export_onnx_command(tmp_path: Path, sample_weight_path: Path, capsys) -> None:
    pytest.importorskip("onnx", reason="export-onnx needs the optional 'onnx' extra")
    out = tmp_path / "mlp.onnx"
    assert main(["export-onnx", str(sample_weight_path), str(out)]) == 0
    assert out.stat().st_size > 45_360 * 4
    assert "opset 17" in capsys.readouterr().out


def test_the_overview_help_lines_are_the_commands_own() -> None:
    """``weightstore --help`` lists commands from a table, without importing them: each
    line must be the one the command's own module gives."""
    assert set(commands.HELP) == set(commands.COMMANDS)
    for name in commands.COMMANDS:
        sub = next(a for a in build_parser(name)._actions
                   if isinstance(a, argparse._SubParsersAction))
        given = {c.dest: c.help for c in sub._choices_actions}
        assert given[name] == commands.HELP[name], name
