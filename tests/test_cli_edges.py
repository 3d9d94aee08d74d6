"""The command line's less travelled paths: the formats table, interrupts and closed
pipes, and codec options it refuses."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import weightstore as ws
from weightstore.cli import formats as formats_cmd
from weightstore.cli.main import main


def test_formats_table_lists_every_codec_and_option(capsys) -> None:
    assert main(["formats"]) == 0
    out = capsys.readouterr().out
    table, _, options = out.partition("options (pass with -o KEY=VALUE):")
    header = table.splitlines()[0].split()
    assert header == ["format", "extensions", "exact", "description"]
    rows = {line.split()[0]: line for line in table.splitlines()[2:] if line.strip()}
    assert set(rows) == {c.name for c in ws.formats()}
    for c in ws.formats():
        assert " ".join(c.extensions) in rows[c.name]
        assert (" yes " if c.lossless else " no ") in rows[c.name]
        for o in c.options:
            line = next(x for x in options.splitlines()
                        if x.split()[:2] == [c.name, f"{o.name}={o.default}"])
            assert o.help in line
            if o.choices:
                assert "[" + "|".join(map(str, o.choices)) + "]" in line


def _raising(error: BaseException):  # type: ignore[no-untyped-def]
    def run(args):  # type: ignore[no-untyped-def]
        raise error
    return run


def test_interrupt_exits_130_and_debug_shows_it(monkeypatch, capsys) -> None:
    monkeypatch.setattr(formats_cmd, "run", _raising(KeyboardInterrupt()))
    assert main(["formats"]) == 130
    assert capsys.readouterr().err == "weightstore: interrupted\n"
    with pytest.raises(KeyboardInterrupt):
        main(["--debug", "formats"])


def test_a_closed_pipe_exits_0(monkeypatch, capsys) -> None:
    monkeypatch.setattr(formats_cmd, "run", _raising(BrokenPipeError()))
    assert main(["formats"]) == 0
    assert capsys.readouterr().err == ""


def test_output_into_a_pipe_closed_early_is_not_an_error(tmp_path: Path) -> None:
    """`weightstore inspect BIG | head -1`: the reader goes away, the command exits 0
    without a traceback."""
    path = tmp_path / "many.npz"
    ws.save({f"t{i:04d}": np.zeros(1) for i in range(3000)}, path)
    proc = subprocess.Popen([sys.executable, "-m", "weightstore.cli.main", "inspect", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline()  # what `head -1` reads
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize(("option", "message"), [
    ("nosuch=1", "no_such|nosuch"),
    ("level=high", "npz option 'level': expected int, found high"),
    ("level=99", "npz option 'level': expected a value from"),
    ("compressed=maybe", "npz option 'compressed': expected bool, found maybe"),
    ("level", "option 'level': expected KEY=VALUE"),
])
def test_bad_codec_options_exit_1_naming_option_expected_found(
        option: str, message: str, tmp_path: Path, capsys) -> None:
    src = tmp_path / "w.npz"
    ws.save({"a": np.arange(3.0)}, src)
    assert main(["convert", str(src), str(tmp_path / "out.npz"), "-o", option, "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("weightstore: error: ") and err.count("\n") == 1
    assert re.search(message, err), err
    assert not (tmp_path / "out.npz").exists()


def test_an_option_with_choices_lists_them() -> None:
    choices = [(c, o) for c in ws.formats() for o in c.options if o.choices]
    assert choices, "no codec option has choices"
    cls, option = choices[0]
    with pytest.raises(ws.OptionError, match=f"{option.name}.*one of"):
        cls(**{option.name: "certainly-not-a-choice"})


def test_option_values_are_typed_from_text_and_checked() -> None:
    from weightstore.codec import Option

    flag = Option("verify", bool, True, "check")
    assert [flag.validate("c", t) for t in ("yes", "On", "0", "false")] == [True, True, False,
                                                                           False]
    assert Option("x", float, 1.0, "").validate("c", 2) == 2.0  # an int where a float goes
    with pytest.raises(ws.OptionError, match="c option 'n': expected int"):
        Option("n", int, 1, "").validate("c", True)  # bool is not an int here
    with pytest.raises(ws.OptionError, match="expected int"):
        Option("n", int, 1, "").validate("c", 1.5)
    maybe = Option("inner", str, None, "")
    assert maybe.validate("c", None) is None
