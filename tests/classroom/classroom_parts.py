"""The real parts of a classroom, started for a test and always taken down: accounts, a git server, a hub.

Also the skip-or-fail helpers (``need_root``, ``need_commands``, ``need_modules``): without a piece
the tests skip naming the install step, and fail instead under ``TOYATTN_REQUIRE_CLASSROOM=1``.

* :func:`system_accounts`: Linux accounts with homes in a scratch folder (``useradd``/``userdel``);
  on the way out every process still running under them is ended by its id, then the account goes.
* :func:`others_can_enter`: lets the accounts reach the course's Python for the test (here it lives
  under /root), then puts the folders' modes back.
* :func:`git_http_server`: git's own smart HTTP transport (``git http-backend``, as CGI) on loopback,
  serving bare repositories from a folder; nbgitpuller's shallow clones need the smart protocol.
* :func:`jupyterhub`: JupyterHub with configurable-http-proxy from a config file, started in its own
  session; stopping it stops its proxy and the servers it spawned.
* :func:`site_launch_link`: the launch link the course website puts on a lesson, from a small build
  of the site's own configuration (the same as ``make site HUB_URL=... REPO_URL=...``).
"""

from __future__ import annotations

import contextlib
import http.server
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ARTIFACTS = ROOT / "artifacts" / "classroom"
CHP = ROOT / ".venv" / "classroom-node" / "node_modules" / ".bin" / "configurable-http-proxy"


def required() -> bool:
    return os.environ.get("TOYATTN_REQUIRE_CLASSROOM") == "1"


def unavailable(reason: str):
    """Skip, or fail under TOYATTN_REQUIRE_CLASSROOM=1 (CI), saying which install step is missing."""
    if required():
        pytest.fail(f"TOYATTN_REQUIRE_CLASSROOM=1 but {reason}", pytrace=False)
    pytest.skip(reason)


def need_root():
    if os.geteuid() != 0:
        unavailable("the classroom tests create Linux accounts and start daemons: run them as root (CI does)")


def need_commands(*names: str, install: str):
    missing = [n for n in names if shutil.which(n) is None and not Path(n).exists()]
    if missing:
        unavailable(f"{', '.join(missing)} not found: {install}")


def need_modules(*names: str, install: str):
    import importlib.util

    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if missing:
        unavailable(f"Python package(s) {', '.join(missing)} missing: {install}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scratch_dir(prefix: str) -> Path:
    """A folder under /tmp that other accounts can enter (pytest's own tmp folders are root-only)."""
    path = Path(tempfile.mkdtemp(prefix=f"toyattn-{prefix}-"))
    path.chmod(0o755)
    return path


def wait_for(what: str, ready, timeout: float, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while True:
        value = ready()
        if value:
            return value
        if (proc is not None and proc.poll() is not None) or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-4000:] if log and log.exists() else ""
            raise AssertionError(f"{what} did not come up in {timeout:.0f} s; log:\n{tail}")
        time.sleep(0.5)


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return 200 <= r.status < 400
    except OSError:
        return False


def _pids_of(uid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


def end_processes_of(uid: int) -> None:
    """End, by id, every process left under a test account (servers, kernels, jobs the test started)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _pids_of(uid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + 10
        while _pids_of(uid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not _pids_of(uid):
            return


@contextlib.contextmanager
def system_accounts(names: list[str], homes: Path):
    """Create the accounts (home ``homes/<name>``, mode 0700, own group); remove them and their processes after."""
    made = []
    try:
        for name in names:
            home = homes / name
            subprocess.run(["useradd", "--home-dir", str(home), "--no-create-home", "--shell", "/bin/bash",
                            "--user-group", name], check=True, capture_output=True, text=True)
            made.append(name)
            home.mkdir()
            entry = pwd.getpwnam(name)
            os.chown(home, entry.pw_uid, entry.pw_gid)
            home.chmod(0o700)
        yield {name: pwd.getpwnam(name) for name in names}
    finally:
        for name in made:
            with contextlib.suppress(KeyError):
                end_processes_of(pwd.getpwnam(name).pw_uid)
            subprocess.run(["userdel", name], capture_output=True)
            subprocess.run(["groupdel", name], capture_output=True)  # already gone where userdel removes it


@contextlib.contextmanager
def others_can_enter(*paths: Path):
    """Let other accounts pass through (o+x, not list) every folder above ``paths`` for the block, then restore.

    Students' servers and jobs run the course's Python as the student. Where that Python lives under a
    private folder (on this CI image the interpreter is pyenv's, under /root, mode 0700), they cannot
    start it; a real hub installs its single-user environment somewhere every student can read.
    """
    changed: list[tuple[Path, int]] = []
    try:
        for path in paths:
            for folder in reversed(Path(os.path.realpath(path)).parents):
                mode = folder.stat().st_mode
                if not mode & 0o001 and folder not in [f for f, _ in changed]:
                    folder.chmod((mode & 0o7777) | 0o001)
                    changed.append((folder, mode & 0o7777))
        yield [folder for folder, _ in changed]
    finally:
        for folder, mode in reversed(changed):
            folder.chmod(mode)


def check_runs_as(user: str, *code_lines: str) -> None:
    """Fail with the reason when ``user`` cannot import the course in the course's Python."""
    result = subprocess.run(["runuser", "-u", user, "--", sys.executable, "-c", "; ".join(code_lines)],
                            capture_output=True, text=True, timeout=120, cwd="/")
    assert result.returncode == 0, (f"{user} cannot run the course's Python {sys.executable}: "
                                    f"{result.stderr[-1500:]} (every student must be able to read it)")


class _GitBackend(http.server.BaseHTTPRequestHandler):
    """One request through ``git http-backend`` (CGI), as a web server in front of git would do it."""

    project_root = "/nonexistent"

    def do_GET(self):
        self._cgi()

    def do_POST(self):
        self._cgi()

    def _cgi(self):
        path, _, query = self.path.partition("?")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": self.project_root,
               "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": self.command, "PATH_INFO": path,
               "QUERY_STRING": query, "REMOTE_ADDR": self.client_address[0],
               "CONTENT_TYPE": self.headers.get("Content-Type", ""), "CONTENT_LENGTH": str(len(body))}
        for key, value in self.headers.items():
            env["HTTP_" + key.upper().replace("-", "_")] = value
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value.strip()))
        self.send_response(status)
        for key, value in headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def git_http_server(project_root: Path):
    """Serve the bare repositories in ``project_root`` at ``http://127.0.0.1:PORT/<name>``."""
    handler = type("Backend", (_GitBackend,), {"project_root": str(project_root)})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def git(*args: str, cwd: Path | None = None) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="Instructor", GIT_AUTHOR_EMAIL="instructor@example.invalid",
               GIT_COMMITTER_NAME="Instructor", GIT_COMMITTER_EMAIL="instructor@example.invalid")
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, env=env).stdout


def course_repository(served: Path, work: Path) -> Path:
    """The instructor's course repository (notebooks/, exercises/, solutions/ of this checkout), pushed to
    a bare ``served/toyattn`` on branch main. Returns the instructor's working copy."""
    bare = served / "toyattn"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    git("init", "--quiet", "--initial-branch=main", str(work))
    for name in ("notebooks", "exercises", "solutions", "jupytext.toml"):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, work / name, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
        else:
            shutil.copy2(src, work / name)
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "the course", cwd=work)
    git("push", "--quiet", str(bare), "main", cwd=work)
    return work


def site_launch_link(hub_url: str, repo_url: str, page: str, out: Path) -> str:
    """The JupyterHub launch link on ``page``'s website page, from a build of the site's configuration."""
    import yaml

    config = yaml.safe_load((ROOT / "site" / "_config.yml").read_text(encoding="utf-8"))
    config["execute"]["execute_notebooks"] = "off"
    config["sphinx"]["local_extensions"] = {"course_site": str(ROOT / "site" / "_ext")}
    config["html"]["favicon"] = str(ROOT / config["html"]["favicon"])
    toc = {"format": "jb-book", "root": "README", "chapters": [{"file": page}]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "_config.yml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (out / "_toc.yml").write_text(yaml.safe_dump(toc), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOYATTN_")}
    env.update(TOYATTN_HUB_URL=hub_url, TOYATTN_REPO_URL=repo_url, TOYATTN_REPO_BRANCH="main")
    result = subprocess.run([str(VENV_BIN / "jupyter-book"), "build", str(ROOT), "--config", str(out / "_config.yml"),
                             "--toc", str(out / "_toc.yml"), "--path-output", str(out / "site")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    html = (out / "site" / "_build" / "html" / f"{page}.html").read_text(encoding="utf-8")
    links = [m.replace("&amp;", "&") for m in re.findall(r'href="([^"]*git-pull[^"]*)"', html)]
    assert len(links) == 1, f"expected one launch link on {page}, found {links}"
    return links[0]


@contextlib.contextmanager
def jupyterhub(state: Path, config: str, port: int, env: dict | None = None):
    """Run ``jupyterhub -f state/jupyterhub_config.py`` until the block ends; its log is ``state/jupyterhub.log``."""
    (state / "jupyterhub_config.py").write_text(config, encoding="utf-8")
    log = state / "jupyterhub.log"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "TOYATTN_"))}, **(env or {})}
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '/usr/bin:/bin')}"
    with open(log, "w") as log_file:
        proc = subprocess.Popen([str(VENV_BIN / "jupyterhub"), "-f", str(state / "jupyterhub_config.py")],
                                cwd=state, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        wait_for("JupyterHub", lambda: http_ok(f"http://127.0.0.1:{port}/hub/health"), 120, proc, log)
        yield log
    finally:
        proc.send_signal(signal.SIGTERM)  # the hub stops the single-user servers and its proxy
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the proxy, should the hub have died without stopping it


def hub_config(*, port: int, hub_port: int, proxy_api_port: int, state: Path, users: list[str], admin: str,
               password: str, extra: str = "") -> str:
    """A JupyterHub config: loopback, configurable-http-proxy, DummyAuthenticator, the course's venv as the
    single-user environment (its own Python, so its kernel is the course's)."""
    return f"""
c = get_config()  # noqa
c.JupyterHub.bind_url = "http://127.0.0.1:{port}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub_port}"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{proxy_api_port}"
c.ConfigurableHTTPProxy.command = [{str(CHP)!r}]
c.JupyterHub.db_url = "sqlite:///{state}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{state}/jupyterhub_cookie_secret"
c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = {password!r}
c.Authenticator.allowed_users = {set(users)!r}
c.Authenticator.admin_users = {{{admin!r}}}
c.Spawner.cmd = [{str(VENV_BIN / "jupyterhub-singleuser")!r}]
c.Spawner.default_url = "/lab"
c.Spawner.args = ["--LabApp.expose_app_in_browser=True"]
c.Spawner.environment = {{"TOYATTN_PROGRESS": "0"}}
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
{extra}
"""
