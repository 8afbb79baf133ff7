"""The `lake` command prints catalog facts, and errors as one clear line."""

from __future__ import annotations

from click.testing import CliRunner

from etl.cli import main


def test_catalog_list_and_show() -> None:
    runner = CliRunner()
    listed = runner.invoke(main, ["catalog", "list"])
    assert listed.exit_code == 0
    assert len(listed.output.strip().splitlines()) == 8
    shown = runner.invoke(main, ["catalog", "show", "renshe.insured_person"])
    assert shown.exit_code == 0
    assert "encoding gbk" in shown.output and "id_no" in shown.output
    assert "restricted" in shown.output


def test_unknown_dataset_is_one_line_error() -> None:
    result = CliRunner().invoke(main, ["catalog", "show", "nope"])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("error: unknown dataset 'nope'")
    assert "Traceback" not in result.output


def test_catalog_check_reports_broken_directory(tmp_path) -> None:
    (tmp_path / "gongan.yaml").write_text("department: [", encoding="utf-8")
    result = CliRunner().invoke(main, ["catalog", "check", str(tmp_path)])
    assert result.exit_code == 1
    assert "gongan.yaml:" in result.output and "not valid YAML" in result.output
