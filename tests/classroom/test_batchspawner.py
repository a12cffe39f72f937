"""A cluster-style hub: JupyterHub with batchspawner's SlurmSpawner starts a student's server as a SLURM job.

The same hub as test_hub_classroom (loopback, configurable-http-proxy, DummyAuthenticator), with
``batchspawner.SlurmSpawner`` as the spawner and the single-node SLURM of slurm_parts. A student
logs in in headless Chromium; the hub submits the server as the student's batch job (``sbatch``
run as the student with ``runuser``, where a site would use sudo), the job reports its port back,
and JupyterLab loads through the proxy. ``squeue`` shows the job running as the student.
"""

from __future__ import annotations

import secrets
import shutil
import sys

import pytest
from classroom_parts import (
    CHP,
    ROOT,
    VENV_BIN,
    check_runs_as,
    free_port,
    hub_config,
    jupyterhub,
    need_commands,
    need_modules,
    need_root,
    others_can_enter,
    scratch_dir,
    system_accounts,
)
from slurm_parts import slurm_cluster

pytestmark = pytest.mark.classroom


def _slurm_spawner(slurm_conf: str) -> str:
    return f"""
import batchspawner  # noqa: F401  (registers the API the job reports its port to)
c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
c.SlurmSpawner.exec_prefix = "runuser -u {{username}} --"
c.SlurmSpawner.batchspawner_singleuser_cmd = {str(VENV_BIN / "batchspawner-singleuser")!r}
c.SlurmSpawner.req_runtime = "00:20:00"
c.SlurmSpawner.req_memory = "2G"
c.SlurmSpawner.req_nprocs = "1"
c.Spawner.environment = {{"SLURM_CONF": {slurm_conf!r}, "TOYATTN_PROGRESS": "0"}}
"""


def test_slurm_spawner_starts_a_student_server_as_a_job(chromium, artifacts_dir):
    need_root()
    need_commands("slurmctld", "slurmd", "sbatch", "munged", install="`make classroom-deps` (apt-get install slurm-wlm munge)")
    need_commands(str(CHP), install="`make classroom-deps` (npm install configurable-http-proxy into .venv/classroom-node)")
    need_modules("jupyterhub", "batchspawner", install="`make classroom-deps` (pip install -e '.[classroom]')")
    scratch = scratch_dir("batchspawner")
    try:
        homes, state = scratch / "home", scratch / "hub"
        homes.mkdir(mode=0o755)
        state.mkdir(mode=0o700)
        student = f"cy{secrets.token_hex(2)}"
        password = secrets.token_urlsafe(12)
        port = free_port()
        with system_accounts([student], homes), others_can_enter(sys.executable, ROOT), \
                slurm_cluster(scratch / "slurm") as slurm:
            check_runs_as(student, "import jupyterhub, batchspawner")
            config = hub_config(port=port, hub_port=free_port(), proxy_api_port=free_port(), state=state,
                                users=[student], admin=student, password=password,
                                extra=_slurm_spawner(str(scratch / "slurm" / "slurm.conf")))
            # The hub's own squeue/scancel calls find the cluster through SLURM_CONF, as on a login node.
            with jupyterhub(state, config, port, env={"SLURM_CONF": slurm.env["SLURM_CONF"]}) as hub_log:
                context = chromium.new_context(viewport={"width": 1400, "height": 900})
                try:
                    page = context.new_page()
                    page.goto(f"http://127.0.0.1:{port}/hub/login")
                    page.fill("#username_input", student)
                    page.fill("#password_input", password)
                    page.click("#login_submit")
                    try:
                        page.wait_for_url(f"**/user/{student}/lab**", timeout=240_000)
                        page.wait_for_function("() => !!(window.jupyterapp && document.querySelector('.jp-LauncherCard'))",
                                               timeout=120_000)
                    except Exception as err:
                        page.screenshot(path=str(artifacts_dir / "slurm_spawn_failed.png"))
                        raise AssertionError(f"no JupyterLab from the SLURM job ({type(err).__name__}); page {page.url}\n"
                                             f"hub log:\n{hub_log.read_text(errors='replace')[-4000:]}\n"
                                             f"slurmd log:\n{slurm.log('slurmd')}") from None
                    page.screenshot(path=str(artifacts_dir / "slurm_spawned_lab.png"))
                    jobs = slurm.run("squeue", "--noheader", "-o", "%i %u %j %T %N").stdout.split("\n")
                    running = [j.split() for j in jobs if j.strip()]
                    assert [(u, name, st) for _, u, name, st, _ in running] == \
                        [(student, "spawner-jupyterhub", "RUNNING")], jobs
                    job_id = running[0][0]
                    assert (homes / student / f"jupyterhub_slurmspawner_{job_id}.log").is_file()
                finally:
                    context.close()
            # Stopping the hub stopped the server: the job is gone from the queue.
            assert slurm.wait_job(job_id, timeout=60) in ("COMPLETED", "CANCELLED", "GONE")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
