"""Staging (docs/staging.md): File URLs fetched from real servers on loopback (HTTP, HTTPS with a
certificate the test trusts, FTP), zip archives read and written, plug-in providers, and every bad
input of issue 16 failing the task with an exception naming the URL and leaving no file behind."""

import glob
import hashlib
import os
import re
import socket
import zipfile

import pytest
from conftest import wait_until
from staging_servers import FileServer, FtpServer, self_signed_certificate, tls_server_context

import pervade as parsl
from pervade import File, HighThroughputExecutor, LocalProvider, ThreadPoolExecutor, bash_app, python_app
from pervade.data_provider.data_manager import default_staging
from pervade.data_provider.ftp import FTPInTaskStaging
from pervade.data_provider.http import HTTPInTaskStaging, HTTPSeparateTaskStaging
from pervade.data_provider.staging import Staging
from pervade.data_provider.transfer import StagingError
from pervade.data_provider.zip import ZipFileStaging
from pervade.errors import DependencyError

T = 60
BODY = b"".join(b"%d\n" % i for i in range(100, 0, -1))


@python_app
def read(f):
    with open(f, "rb") as fh:
        return fh.read()


@python_app
def read_inputs(inputs=()):
    return [open(f, "rb").read() for f in inputs]


@python_app
def read_keyword(*, x=None):
    return open(x, "rb").read()


@bash_app
def copy(inputs=(), outputs=()):
    return f"cp {inputs[0]} {outputs[0]}"


@python_app
def length(data):
    return len(data)


@pytest.fixture(autouse=True)
def node_cache(tmp_path, monkeypatch):
    """Each test its own node cache (pools started by the test inherit the variable)."""
    cache = tmp_path / "node-cache"
    monkeypatch.setenv("PERVADE_STAGING_CACHE", str(cache))
    return cache


@pytest.fixture
def http():
    server = FileServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return self_signed_certificate(str(tmp_path_factory.mktemp("tls")))


@pytest.fixture
def https(certificate):
    server = FileServer(tls_server_context(*certificate))
    yield server
    server.stop()


@pytest.fixture
def ftp(tmp_path):
    root = tmp_path / "ftproot"
    root.mkdir()
    (root / "data.txt").write_bytes(BODY)
    server = FtpServer(str(root))
    yield server
    server.stop()


def threads(tmp_path, **kw):
    return ThreadPoolExecutor(max_threads=4, working_dir=str(tmp_path / "work"), **kw)


def staging_error(fut, match: str) -> StagingError:
    """The StagingError a task failed with: its own (staged in the task) or, as the cause of its
    DependencyError, its stage-in task's; its message must match `match`."""
    exc = fut.exception(timeout=T)
    if isinstance(exc, DependencyError):
        exc = exc.__cause__
    assert isinstance(exc, StagingError), repr(exc)
    assert re.search(match, str(exc)), str(exc)
    return exc


def no_partial_files(directory) -> list:
    """Files a transfer left under temporary names (there must be none)."""
    return glob.glob(os.path.join(str(directory), "**", ".*.part"), recursive=True)


# ---------------------------------------------------------------------------------- HTTP, HTTPS


def test_http_separate_task_as_argument_keyword_and_input(load, http, tmp_path):
    url = http.add("/unsorted.txt", BODY)
    dfk = load(executors=[threads(tmp_path)])
    assert read(File(url)).result(timeout=T) == BODY
    assert read_keyword(x=File(url)).result(timeout=T) == BODY
    assert read_inputs(inputs=[File(url), File(url)]).result(timeout=T) == [BODY, BODY]
    assert (tmp_path / "work" / "unsorted.txt").read_bytes() == BODY
    assert wait_until(lambda: dfk.outstanding_tasks == 0, T)  # no staging task left behind
    assert not no_partial_files(tmp_path)


def test_caller_file_is_not_changed(load, http, tmp_path):
    f = File(http.add("/a.txt", BODY))
    load(executors=[threads(tmp_path)])
    read(f).result(timeout=T)
    assert f.local_path is None  # the provider set the local path of a copy


def test_output_then_input_chain(load, http, tmp_path):
    """A staged-in URL feeds a bash app whose output (a DataFuture) feeds the next app."""
    load(executors=[threads(tmp_path)])
    url = http.add("/in.txt", BODY)
    first = copy(inputs=[File(url)], outputs=[File(str(tmp_path / "out.txt"))])
    assert read(first.outputs[0]).result(timeout=T) == BODY


def test_https_with_a_trusted_certificate(load, https, certificate, tmp_path, monkeypatch):
    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])
    url = https.add("/secure.txt", BODY)
    load(executors=[threads(tmp_path, storage_access=[HTTPInTaskStaging()])])
    assert read(File(url)).result(timeout=T) == BODY


def test_https_with_an_untrusted_certificate_fails_the_task(load, https, tmp_path, monkeypatch):
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    url = https.add("/secure.txt", BODY)
    load(executors=[threads(tmp_path)])
    e = staging_error(read(File(url)), "(?i)certificate")
    assert url in str(e)
    assert not (tmp_path / "work" / "secure.txt").exists()
    assert not no_partial_files(tmp_path)


def test_http_in_task_on_htex(load, http, tmp_path):
    url = http.add("/data.bin", os.urandom(100_000))
    load(executors=[htex(tmp_path, storage_access=[HTTPInTaskStaging()])])
    assert read(File(url)).result(timeout=T) == http.files["/data.bin"]


def test_http_separate_task_on_htex_with_checksum(load, http, tmp_path):
    data = os.urandom(50_000)
    url = http.add("/sum.bin", data)
    load(executors=[htex(tmp_path)])
    f = File(url, checksum="sha256:" + hashlib.sha256(data).hexdigest())
    assert read(f).result(timeout=T) == data


# ---------------------------------------------------------------------------------- node cache


def htex(tmp_path, workers=2, **kw):
    return HighThroughputExecutor(label="htex", max_workers_per_node=workers, working_dir=str(tmp_path / "w"),
                                  provider=LocalProvider(init_blocks=1, max_blocks=1), **kw)


@python_app
def digest(f):
    with open(f, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def test_one_transfer_per_node(load, http, tmp_path):
    """Tasks in several worker processes of one node fetching one URL: one GET on the server."""
    data = os.urandom(200_000)
    url = http.add("/shared.bin", data)
    load(executors=[htex(tmp_path, workers=4, storage_access=[HTTPInTaskStaging()])])
    futs = [digest(File(url)) for _ in range(40)]
    assert {f.result(timeout=T) for f in futs} == {hashlib.sha256(data).hexdigest()}
    assert http.gets["/shared.bin"] == 1


def test_a_changed_file_is_fetched_again(load, http, tmp_path):
    url = http.add("/v.txt", b"version 1\n")
    load(executors=[threads(tmp_path)])
    assert read(File(url)).result(timeout=T) == b"version 1\n"
    assert read(File(url)).result(timeout=T) == b"version 1\n"
    assert http.gets["/v.txt"] == 1
    http.files["/v.txt"] = b"version 2\n"  # a new ETag: a new cache entry
    assert read(File(url)).result(timeout=T) == b"version 2\n"
    assert http.gets["/v.txt"] == 2


def test_checksum_of_a_cached_entry(load, http, tmp_path):
    """An entry first fetched without a checksum is verified when a File with one asks for it."""
    data = os.urandom(30_000)
    url = http.add("/e.bin", data)
    good = "sha256:" + hashlib.sha256(data).hexdigest()
    bad = "sha256:" + hashlib.sha256(b"other").hexdigest()
    load(executors=[threads(tmp_path)])
    assert read(File(url)).result(timeout=T) == data
    assert read(File(url, checksum=good)).result(timeout=T) == data
    e = staging_error(read(File(url, checksum=bad)), "checksum mismatch")
    assert bad in str(e) and good in str(e)
    assert http.gets["/e.bin"] == 1


def test_a_task_writing_its_staged_file_does_not_poison_the_cache(load, http, tmp_path):
    """The task that fetched gets the cache entry itself (no copy); writing to it drops the entry."""
    data = os.urandom(50_000)
    url = http.add("/w.bin", data)
    load(executors=[threads(tmp_path)])
    assert read(File(url)).result(timeout=T) == data
    with open(tmp_path / "work" / "w.bin", "ab") as f:  # what a task may do to its input
        f.write(b"changed")
    assert read(File(url)).result(timeout=T) == data
    assert http.gets["/w.bin"] == 2


def test_progress_of_a_long_transfer_is_logged(load, http, tmp_path, monkeypatch, caplog):
    from pervade.data_provider import transfer

    monkeypatch.setattr(transfer, "PROGRESS_INTERVAL", 0.05)
    data = os.urandom(100_000)
    url = http.add("/slow.bin", data)
    http.drip["/slow.bin"] = 10  # about half a second
    load(executors=[threads(tmp_path, storage_access=[HTTPInTaskStaging()])])
    with caplog.at_level("INFO", logger="pervade.data_provider.transfer"):
        assert read(File(url)).result(timeout=T) == data
    lines = [r.getMessage() for r in caplog.records if r.name == "pervade.data_provider.transfer"]
    assert any(line.startswith(f"staging {url}: ") and line.endswith(" of 100000 bytes") for line in lines), lines


def test_transfers_at_once_per_node(load, http, tmp_path, monkeypatch):
    """PERVADE_STAGING_PARALLEL=1: four tasks on four threads fetching four slow files take turns."""
    monkeypatch.setenv("PERVADE_STAGING_PARALLEL", "1")
    urls = []
    for i in range(4):
        urls.append(http.add(f"/p{i}.bin", os.urandom(20_000)))
        http.drip[f"/p{i}.bin"] = 4
    load(executors=[threads(tmp_path, storage_access=[HTTPInTaskStaging()])])
    futs = [read(File(u)) for u in urls]
    assert [f.result(timeout=T) for f in futs] == [http.files[f"/p{i}.bin"] for i in range(4)]
    assert http.most_at_once == 1


def test_cache_size_limit_and_off(load, http, tmp_path, monkeypatch):
    url = http.add("/big.bin", os.urandom(20_000))
    monkeypatch.setenv("PERVADE_STAGING_CACHE_GB", str(10_000 / 2**30))  # smaller than the file
    load(executors=[threads(tmp_path)])
    for _ in range(2):
        assert read(File(url)).result(timeout=T) == http.files["/big.bin"]
    assert http.gets["/big.bin"] == 2  # evicted after each use
    monkeypatch.setenv("PERVADE_STAGING_CACHE", "off")
    for _ in range(2):
        assert read(File(url)).result(timeout=T) == http.files["/big.bin"]
    assert http.gets["/big.bin"] == 4


def test_retry_resumes_an_interrupted_transfer(load, http, tmp_path):
    data = os.urandom(300_000)
    url = http.add("/cut.bin", data)
    http.cut_next["/cut.bin"] = 100_000  # the first GET stops after 100,000 bytes
    load(executors=[threads(tmp_path, storage_access=[HTTPInTaskStaging()])], retries=1)
    assert read(File(url)).result(timeout=T) == data
    assert http.ranges["/cut.bin"] == [0, 100_000]  # the retry asked only for the rest
    assert not no_partial_files(tmp_path / "work")


def test_retry_without_ranges_starts_again(load, http, tmp_path):
    data = os.urandom(300_000)
    url = http.add("/whole.bin", data)
    http.cut_next["/whole.bin"] = 100_000
    http.no_ranges.add("/whole.bin")  # answers the resumed GET with the whole body
    load(executors=[threads(tmp_path, storage_access=[HTTPInTaskStaging()])], retries=1)
    assert read(File(url)).result(timeout=T) == data
    assert http.ranges["/whole.bin"] == [0, 100_000, 0]


PARSL_SCRIPT = """
import sys
import parsl
from parsl import python_app
from parsl.data_provider.files import File
from parsl.configs.{config} import config

@python_app
def sort_lines(inputs=(), outputs=()):
    with open(inputs[0]) as src, open(outputs[0], "w") as dst:
        dst.writelines(sorted(src.readlines(), key=int))

with parsl.load(config):
    out = sort_lines(inputs=[File(sys.argv[1])], outputs=[File(sys.argv[2])])
    out.outputs[0].result()
print(open(sys.argv[2]).read().split()[:3])
"""


@pytest.mark.parametrize("config", ["local_threads", "htex_local"])
def test_a_parsl_script_with_a_url_runs_unchanged(http, tmp_path, config):
    """`pervade run` of a script written for Parsl (its own imports, its ready-made config)."""
    import subprocess
    import sys

    script = tmp_path / "script.py"
    script.write_text(PARSL_SCRIPT.format(config=config))
    url = http.add("/unsorted.txt", BODY)
    done = subprocess.run([sys.executable, "-m", "pervade", "run", str(script), url, str(tmp_path / "sorted.txt")],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "['1', '2', '3']"
    assert http.gets["/unsorted.txt"] == 1


# ---------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("provider", [HTTPSeparateTaskStaging, HTTPInTaskStaging])
def test_http_404_fails_the_task_and_its_dependents(load, http, tmp_path, provider):
    load(executors=[threads(tmp_path, storage_access=[provider()])])
    url = http.url("/missing.txt")
    fut = read(File(url))
    e = staging_error(fut, "HTTP 404")
    assert url in str(e)
    with pytest.raises(DependencyError):
        length(fut).result(timeout=T)
    assert not (tmp_path / "work" / "missing.txt").exists()
    assert not no_partial_files(tmp_path)


def test_checksum_mismatch_names_the_url_and_both_digests(load, http, tmp_path):
    data = b"the real content\n"
    url = http.add("/c.txt", data)
    wrong = "sha256:" + hashlib.sha256(b"something else").hexdigest()
    load(executors=[threads(tmp_path)])
    e = staging_error(read(File(url, checksum=wrong)), "")
    message = str(e)
    assert url in message and wrong in message and hashlib.sha256(data).hexdigest() in message
    assert not (tmp_path / "work" / "c.txt").exists()
    assert not no_partial_files(tmp_path)


def test_a_bad_checksum_is_refused_at_the_call():
    with pytest.raises(ValueError, match="sha256"):
        File("http://127.0.0.1/x", checksum="md5:abc")


def test_refused_connection(load, tmp_path):
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.txt"
    load(executors=[threads(tmp_path)])
    e = staging_error(read(File(url)), "(?i)connect")
    assert url in str(e)
    assert not no_partial_files(tmp_path)


def test_dns_failure(load, tmp_path):
    url = "http://no-such-host.invalid/x.txt"  # .invalid never resolves (RFC 2606)
    load(executors=[threads(tmp_path)])
    e = staging_error(read(File(url)), "")
    assert url in str(e)


def test_timeout_is_configurable(load, http, tmp_path):
    url = http.url("/hangs.txt")
    http.hang.add("/hangs.txt")
    load(executors=[threads(tmp_path, storage_access=[HTTPSeparateTaskStaging(timeout=0.5)])])
    e = staging_error(read(File(url)), "timed out")
    assert url in str(e)
    assert not (tmp_path / "work" / "hangs.txt").exists()
    assert not no_partial_files(tmp_path)


def test_retries_apply_to_staging(load, http, tmp_path):
    url = http.add("/flaky.txt", BODY)
    http.fail_next["/flaky.txt"] = 1
    load(executors=[threads(tmp_path, storage_access=[HTTPInTaskStaging()])], retries=1)
    assert read(File(url)).result(timeout=T) == BODY
    assert http.gets["/flaky.txt"] == 2


def test_unsupported_scheme_raises_at_the_call(load, tmp_path):
    load(executors=[threads(tmp_path)])
    with pytest.raises(ValueError, match="cannot stage file"):
        read(File("gopher://127.0.0.1/x"))


# ---------------------------------------------------------------------------------- FTP


def test_ftp_separate_task(load, ftp, tmp_path):
    load(executors=[threads(tmp_path)])
    assert read(File(ftp.url("data.txt"))).result(timeout=T) == BODY
    assert ftp.retrs["data.txt"] == 1


def test_ftp_in_task(load, ftp, tmp_path):
    load(executors=[threads(tmp_path, storage_access=[FTPInTaskStaging()])])
    assert read_inputs(inputs=[File(ftp.url("data.txt"))]).result(timeout=T) == [BODY]


def test_ftp_retry_resumes_an_interrupted_transfer(load, ftp, tmp_path):
    data = os.urandom(300_000)
    (tmp_path / "ftproot" / "cut.bin").write_bytes(data)
    ftp.cut_next["cut.bin"] = 100_000  # the first RETR stops after 100,000 bytes
    load(executors=[threads(tmp_path, storage_access=[FTPInTaskStaging()])], retries=1)
    assert read(File(ftp.url("cut.bin"))).result(timeout=T) == data
    # The retry asked only for the rest (libcurl also sends REST 0, probing, before whole files).
    assert [offset for offset in ftp.rests["cut.bin"] if offset] == [100_000]
    assert not no_partial_files(tmp_path / "work")


def test_ftp_missing_file(load, ftp, tmp_path):
    url = ftp.url("nothing.txt")
    load(executors=[threads(tmp_path)])
    e = staging_error(read(File(url)), "550")
    assert url in str(e)
    assert not (tmp_path / "work" / "nothing.txt").exists()
    assert not no_partial_files(tmp_path)


# ---------------------------------------------------------------------------------- zip


@python_app
def write_lines(n, outputs=()):
    with open(outputs[0], "w") as f:
        f.writelines(f"{i}\n" for i in range(n))


def test_zip_out_then_in(load, tmp_path):
    load(executors=[threads(tmp_path)])
    archive = tmp_path / "a.zip"
    out = write_lines(7, outputs=[File(f"zip:{archive}/dir/lines.txt")])
    assert read(out.outputs[0]).result(timeout=T) == b"".join(b"%d\n" % i for i in range(7))
    with zipfile.ZipFile(archive) as z:
        assert z.namelist() == ["dir/lines.txt"]


def test_zip_many_writers_to_one_archive(load, tmp_path):
    load(executors=[threads(tmp_path)])
    archive = tmp_path / "many.zip"
    futs = [write_lines(i, outputs=[File(f"zip:{archive}/f{i}.txt")]) for i in range(20)]
    for fut in futs:
        fut.outputs[0].result(timeout=T)
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == sorted(f"f{i}.txt" for i in range(20))
        assert z.read("f5.txt") == b"0\n1\n2\n3\n4\n"


def one_member_zip(tmp_path):
    """An archive holding here.txt."""
    archive = tmp_path / "in.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("here.txt", "x")
    return archive


def test_zip_missing_member(load, tmp_path):
    url = f"zip:{one_member_zip(tmp_path)}/not-here.txt"
    load(executors=[threads(tmp_path)])
    e = staging_error(read(File(url)), "no member")
    assert url in str(e)
    assert not (tmp_path / "work" / "not-here.txt").exists()


def test_zip_member_outside_the_archive(load, tmp_path):
    url = f"zip:{one_member_zip(tmp_path)}/../../etc/passwd"
    load(executors=[threads(tmp_path)])
    e = staging_error(read(File(url)), "not a file path inside the archive")
    assert url in str(e)
    with pytest.raises(StagingError, match="not a file path inside the archive"):
        write_lines(1, outputs=[File(url)]).outputs[0].result(timeout=T)


# ---------------------------------------------------------------------------------- plug-ins


class Tagging(Staging):
    """A user's provider: "tag://name" files are made by a stage-in task of its own."""

    def can_stage_in(self, file):
        return file.scheme == "tag"

    def stage_in(self, dm, executor, file, parent_fut):
        file.local_path = os.path.join(dm.working_dir(executor), file.netloc)
        return dm.staging_app(make_tag, executor)(outputs=[file], _parsl_staging_inhibit=True).outputs[0]


def make_tag(outputs=(), _parsl_staging_inhibit=True):
    os.makedirs(os.path.dirname(outputs[0].local_path), exist_ok=True)
    with open(outputs[0].local_path, "w") as f:
        f.write("tag:" + outputs[0].netloc)


def test_plugin_provider_beside_the_defaults(load, tmp_path):
    load(executors=[threads(tmp_path, storage_access=[Tagging()] + default_staging)])
    assert read(File("tag://hello")).result(timeout=T) == b"tag:hello"
    local = tmp_path / "local.txt"
    local.write_text("plain")
    assert read(File(str(local))).result(timeout=T) == b"plain"


def test_zip_default_provider_is_a_zip_file_staging():
    assert any(isinstance(p, ZipFileStaging) for p in default_staging)


def test_no_files_no_staging(dfk):
    """Calls without Files are not touched by staging: no staging tasks appear."""
    assert length([1, 2, 3]).result(timeout=T) == 3
    assert dfk.reserve_task_id() == 1
