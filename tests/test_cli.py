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
    assert "control file required" in shown.output and "at most 10% a night" in shown.output


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


def test_unreachable_catalog_store_is_one_line_without_the_password() -> None:
    env = {"YIMEN_CATALOG_URL": "postgresql+psycopg://lake:s3cret@127.0.0.1:1/catalog"}
    result = CliRunner().invoke(main, ["status"], env=env)
    assert result.exit_code == 1
    assert result.output.startswith("error: catalog store postgresql+psycopg://lake:***@")
    assert "s3cret" not in result.output and len(result.output.strip().splitlines()) == 1


def test_demo_refuses_to_wipe_a_lake_configured_elsewhere(tmp_path) -> None:
    keep = tmp_path / "production-lake"
    keep.mkdir()
    (keep / "precious.parquet").write_text("x")
    result = CliRunner().invoke(main, ["demo"], env={"YIMEN_LAKE_ROOT": str(keep)})
    assert result.exit_code == 1 and "only resets the one under var/" in result.output
    assert (keep / "precious.parquet").exists()


def test_unexpected_errors_are_one_line_too(monkeypatch) -> None:
    import catalog.definitions

    def broken(*_args):
        raise RuntimeError("disk on fire at '/secret/path'\nmore detail")

    monkeypatch.setattr(catalog.definitions, "load_catalog", broken)
    result = CliRunner().invoke(main, ["catalog", "list"])
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: unexpected RuntimeError: disk on fire at '…' (--debug for the traceback)"
    )


def test_lake_accept_records_who_when_and_why(tmp_path) -> None:
    import getpass
    from datetime import date

    from catalog.store import CatalogStore
    from etl.settings import LakeSettings

    env = {"YIMEN_HOME": str(tmp_path)}
    runner = CliRunner()
    args = ["accept", "renshe.insured_person", "--date", "2026-11-29", "--reason"]
    unknown = runner.invoke(main, ["accept", "nope", "--date", "2026-11-29", "--reason", "x"])
    assert unknown.exit_code == 1 and unknown.output.startswith("error: unknown dataset 'nope'")
    assert runner.invoke(main, [*args, "  "], env=env).exit_code == 2  # a reason is required
    accepted = runner.invoke(main, [*args, "3 districts moved"], env=env)
    assert accepted.exit_code == 0, accepted.output
    assert "run the night again: lake run --date 2026-11-29" in accepted.output
    store = CatalogStore(LakeSettings.under(tmp_path).catalog_url)
    acceptance = store.acceptance("renshe.insured_person", date(2026, 11, 29))
    assert (acceptance.accepted_by, acceptance.reason) == (getpass.getuser(), "3 districts moved")
    assert acceptance.accepted_at is not None


def test_lake_freezes_what_it_loaded_when_its_process_exits_only() -> None:
    """The shutdown collections skip the command's objects (decision 0020), at exit only."""
    import gc
    import subprocess
    import sys

    probe = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count() > 0))\n"
        "from etl.cli import main\n"
        "main(['catalog', 'list'])\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("frozen at exit: True")
    before = gc.get_freeze_count()
    assert CliRunner().invoke(main, ["catalog", "list"]).exit_code == 0
    assert gc.get_freeze_count() == before  # a process that goes on keeps collecting
