"""Traffic on an app host: which host, the arguments it gets, and bringing its records back safely."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from redis_ha.drill.cli import build_parser
from redis_ha.drill.hosts import RECORDS_ARCHIVE, AppHostTraffic, app_host_from
from redis_ha.drill.orchestrator import DrillOptions, traffic_arguments
from redis_ha.drill.records import EVENTS_FILE, TRAFFIC_FILE, DrillLog, TrafficRecord, unpack_records
from redis_ha.drill.traffic import probe_error
from redis_ha.errors import RedisUnavailable

INVENTORY = {"app": {"hosts": ["app1", "app2"]}, "redis": {"hosts": ["redis1"]}}


def archive(path: Path, members: dict[str, bytes], *, top: bool = True, **special: tarfile.TarInfo) -> Path:
    """A tarball as `tar -C DIR -czf ARCHIVE .` writes it: ./ then ./<name> for each file."""
    with tarfile.open(path, "w:gz") as tar:
        if top:
            info = tarfile.TarInfo(".")
            info.type = tarfile.DIRTYPE
            tar.addfile(info)
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in special.values():
            tar.addfile(info)
    return path


def test_app_means_the_first_app_host_and_a_name_must_be_an_app_host() -> None:
    assert app_host_from(INVENTORY, "app") == "app1"
    assert app_host_from(INVENTORY, "app2") == "app2"
    with pytest.raises(ValueError, match=r"'redis1' is not an app host of the inventory \(group 'app': app1, app2\)"):
        app_host_from(INVENTORY, "redis1")
    with pytest.raises(ValueError, match=r"no app host .* use --traffic-on controller"):
        app_host_from({"app": {"hosts": []}}, "app")


def test_the_cli_runs_the_traffic_here_unless_told_otherwise() -> None:
    parser = build_parser()
    assert parser.parse_args(["run", "--kind", "kill-master"]).traffic_on == "controller"
    assert parser.parse_args(["run", "--kind", "kill-master", "--traffic-on", "app"]).traffic_on == "app"


def test_the_traffic_gets_the_same_arguments_wherever_it_runs(tmp_path: Path) -> None:
    options = DrillOptions(kind="kill-master", env="lab", out_dir=tmp_path, rate=50.0, workers=3, drain_timeout_s=45.0)
    assert traffic_arguments(options, 812.4) == [
        "--rate", "50", "--workers", "3", "--duration", "812", "--drain-timeout", "45",
    ]  # fmt: skip


def test_an_app_hosts_records_are_unpacked_where_the_report_reads_them(tmp_path: Path) -> None:
    record = TrafficRecord(started=1.0, ended=2.0, rate=5.0, queue="drill-x", probe_interval_s=0.1)
    files = {
        f"./{TRAFFIC_FILE}": json.dumps(record.to_json()).encode(),
        "./traffic.log": b"started\n",
        "./worker-0.log": b"",
        "./executions.log": b"drill-1 1.5 42\n",
    }
    out = tmp_path / "out"
    names = unpack_records(archive(tmp_path / "a.tgz", files), out)
    assert names == ["executions.log", TRAFFIC_FILE, "traffic.log", "worker-0.log"]
    assert TrafficRecord.from_json(json.loads((out / TRAFFIC_FILE).read_text())) == record
    assert not list(out.glob(".*")), "no temporary file is left behind"


@pytest.mark.parametrize(
    "name",
    ["../escape.json", "/etc/evil", "./sub/traffic.json", "sub/../../escape"],
)
def test_a_member_outside_the_top_directory_refuses_the_whole_archive(tmp_path: Path, name: str) -> None:
    bad = archive(tmp_path / "bad.tgz", {"./traffic.log": b"x", name: b"boom"})
    out = tmp_path / "out"
    with pytest.raises(ValueError, match="only plain files at the top"):
        unpack_records(bad, out)
    assert not out.exists() or not any(out.iterdir()), "nothing may be written from a refused archive"
    assert not (tmp_path / "escape.json").exists()


def test_links_and_the_drills_own_files_are_refused(tmp_path: Path) -> None:
    link = tarfile.TarInfo("./traffic.json")
    link.type = tarfile.SYMTYPE
    link.linkname = "/etc/passwd"
    with pytest.raises(ValueError, match="only plain files"):
        unpack_records(archive(tmp_path / "link.tgz", {}, link=link), tmp_path / "out")
    with pytest.raises(ValueError, match="the drill writes that file itself"):
        unpack_records(archive(tmp_path / "events.tgz", {f"./{EVENTS_FILE}": b"{}"}), tmp_path / "out")


def test_an_old_events_file_without_the_new_fields_still_reads() -> None:
    log = DrillLog.from_json({"kind": "kill-master", "env": "lab", "backend": "hosts", "events": []})
    assert log.traffic_on == "controller"
    assert log.sentinel_events == []


def test_a_failed_probe_write_names_its_last_attempt() -> None:
    error = RedisUnavailable(
        "Redis master of 'mymaster' unavailable: SET not done after 3 attempts over 1s (retry deadline)",
        ["TimeoutError: Timeout connecting to server", "ResponseError: NOREPLICAS Not enough good replicas to write."],
    )
    assert probe_error(error) == (
        "RedisUnavailable: Redis master of 'mymaster' unavailable: SET not done after 3 attempts over 1s "
        "(retry deadline) (last attempt: ResponseError: NOREPLICAS Not enough good replicas to write.)"
    )
    assert probe_error(TimeoutError("boom")) == "TimeoutError: boom"


class FakeAppHost:
    """Stands in for Ansible: remembers each run; traffic-stop leaves the records archive where asked."""

    def __init__(self, tmp_path: Path, fail_step: str = "") -> None:
        self.tmp_path = tmp_path
        self.fail_step = fail_step
        self.runs: list[tuple[str, str, dict[str, object]]] = []

    def playbook(self, playbook: str, limit: str, extra: dict[str, object]) -> None:
        self.runs.append((playbook, limit, extra))
        if extra["drill_step"] == self.fail_step:
            raise subprocess.CalledProcessError(2, ["ansible-playbook", "..."])
        if extra["drill_step"] == "traffic-stop":
            record = TrafficRecord(
                started=1.0, ended=2.0, rate=20.0, queue=str(extra["drill_traffic_id"]), probe_interval_s=0.1
            )
            archive(
                Path(str(extra["drill_traffic_fetch_to"])), {f"./{TRAFFIC_FILE}": json.dumps(record.to_json()).encode()}
            )


def test_traffic_on_an_app_host_starts_there_and_its_records_come_back(tmp_path: Path) -> None:
    options = DrillOptions(kind="kill-master", env="lab", out_dir=tmp_path / "out", rate=20.0, drain_timeout_s=60.0)
    options.out_dir.mkdir()
    host = FakeAppHost(tmp_path)
    traffic = AppHostTraffic(host, "app1", options)
    traffic.stop()  # never started: nothing to stop, nothing run
    assert host.runs == []
    traffic.start("drill-1a2b3c4d", 800.0)
    traffic.stop()
    (start_book, start_host, start), (_, _, stop) = host.runs
    assert (start_book, start_host, start["drill_step"], start["drill_traffic_id"]) == (
        "drill.yml",
        "app1",
        "traffic-start",
        "drill-1a2b3c4d",
    )
    assert start["drill_traffic_args"] == traffic_arguments(options, 800.0)
    assert start["drill_traffic_max_s"] == 800 + 60 + 120  # its own bound on the host
    assert stop["drill_step"] == "traffic-stop" and Path(str(stop["drill_traffic_fetch_to"])).is_absolute()
    assert json.loads((options.out_dir / TRAFFIC_FILE).read_text())["queue"] == "drill-1a2b3c4d"
    assert not (options.out_dir / RECORDS_ARCHIVE).exists(), "the archive is deleted once unpacked"


def test_a_failed_start_or_stop_on_the_app_host_says_so_briefly(tmp_path: Path) -> None:
    options = DrillOptions(kind="kill-master", env="lab", out_dir=tmp_path)
    with pytest.raises(
        RuntimeError, match=r"^the traffic did not start on app1 \(ansible-playbook exited with code 2\)"
    ):
        AppHostTraffic(FakeAppHost(tmp_path, "traffic-start"), "app1", options).start("drill-x", 10.0)
    traffic = AppHostTraffic(FakeAppHost(tmp_path, "traffic-stop"), "app1", options)
    traffic.start("drill-x", 10.0)
    with pytest.raises(
        RuntimeError, match=r"^stopping the traffic on app1 failed \(ansible-playbook exited with code 2\)"
    ):
        traffic.stop()
