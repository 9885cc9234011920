"""Distributed runs: real torchrun jobs on CPU with gloo, 2 processes.

Each test launches ``tests/distributed_job.py`` with torchrun (one node, or
two nodes of one process on localhost with a c10d rendezvous) and checks the
files the job left: the run record, the metric CSVs, the checkpoints, the
weights, against single-process numbers computed here. Every launch runs
with a timeout, so a job that hangs fails the test instead of the suite.
"""

from __future__ import annotations

import csv
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
import tomllib
from typing import Any

import pytest
import torch

from drytorch import testing
from tests import distributed_job as job

JOB = pathlib.Path(job.__file__)
TIMEOUT = 180  # seconds for one launch; a healthy one takes under 20 on 2 cores


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port: int = sock.getsockname()[1]
        return port


def one_node(cwd: pathlib.Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the job on 2 processes; a job past ``TIMEOUT`` is killed (and fails)."""
    return testing.torchrun(JOB, cwd=cwd, env=env, timeout=TIMEOUT)


def plain(cwd: pathlib.Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the job in one process, as a script."""
    return subprocess.run(
        [sys.executable, str(JOB)],
        cwd=cwd,
        env=dict(os.environ, **env),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def records(registry: pathlib.Path) -> list[dict[str, Any]]:
    return [
        tomllib.loads(path.read_text())
        for path in sorted(registry.glob('*/runs/*.toml'))
    ]


def result(cwd: pathlib.Path) -> dict[str, Any]:
    found: dict[str, Any] = json.loads((cwd / 'result.json').read_text())
    return found


def reference_test_metrics(weights: pathlib.Path) -> dict[str, float]:
    """The test metrics of ``weights``, computed here in one process."""
    module = job.network(0.0)
    module.load_state_dict(torch.load(weights, weights_only=True))
    _, test_set = job.datasets()
    x, y = test_set.tensors
    with torch.no_grad():
        outputs = module(x)
    return {
        'MSE': float(((outputs - y) ** 2).double().mean()),
        'MAE': float((outputs - y).abs().double().mean()),
    }


def last_row(path: pathlib.Path) -> dict[str, str]:
    with path.open(newline='') as file:
        return list(csv.DictReader(file))[-1]


def work(tmp_path: pathlib.Path, name: str) -> pathlib.Path:
    folder = tmp_path / name
    folder.mkdir()
    return folder


def test_two_processes_are_one_run_with_exact_metrics(
    tmp_path: pathlib.Path, registry_dir: pathlib.Path
) -> None:
    cwd = work(tmp_path, 'job')
    done = one_node(cwd)
    assert done.returncode == 0, done.stdout[-4000:]
    (record,) = records(registry_dir)  # one run, not one per process
    out = result(cwd)
    assert record['id'] == out['id'] and record['status'] == 'completed'
    assert record['world_size'] == 2
    (session,) = record['sessions']
    ranks = session['processes']
    assert [entry['rank'] for entry in ranks] == [0, 1]
    assert len({entry['pid'] for entry in ranks}) == 2
    assert ranks[0]['pid'] == record['pid'] == session['pid']
    # every rank took part and saw its rank; the trackers of rank 0 alone logged
    for rank in (0, 1):
        witness = json.loads((cwd / f'witness_{rank}.json').read_text())
        assert witness == {'rank': rank, 'world_size': 2, 'id': out['id']}
    assert done.stdout.count('Epoch: 1 / 3') == 1
    # each rank trained on its half: 160 samples, 80 each, 10 batches of 8
    assert out['batches'] == 10 and out['steps'] == 30
    outputs = cwd / 'outputs'
    assert [p.name for p in (outputs / 'csv_metrics' / 'job').iterdir()] == [out['id']]
    checkpoints = outputs / 'checkpoints' / 'job' / out['id'] / 'Model'
    assert (checkpoints / 'epoch_3.pt').exists()
    # the test metric of the distributed job is the one-process metric of
    # its weights on the whole test set (43 samples: uneven shares of 22, 21)
    reference = reference_test_metrics(cwd / 'weights.pt')
    for name in ('MSE', 'MAE'):
        assert out['test'][name] == pytest.approx(reference[name], rel=1e-6)
        assert out['validation'][name] == pytest.approx(reference[name], rel=1e-6)
    row = last_row(outputs / 'csv_metrics' / 'job' / out['id'] / 'Model_Test.csv')
    assert float(row['MSE']) == pytest.approx(out['test']['MSE'], rel=1e-9)
    # each sample once, per epoch a new permutation, the same as one process'
    shards = [json.loads((cwd / f'shard_{rank}.json').read_text()) for rank in (0, 1)]
    single = job.shards()  # here: one process
    for epoch in ('epoch_1', 'epoch_2'):
        first, second = (shard[epoch] for shard in shards)
        assert len(first) == len(second) == 11  # 23 // 2 samples each
        assert not set(first) & set(second)
        merged = [index for pair in zip(first, second, strict=True) for index in pair]
        assert merged == single[epoch][:22]
    assert shards[0]['epoch_1'] != shards[0]['epoch_2']
    assert sorted(shards[0]['inference'] + shards[1]['inference']) == list(range(23))
    assert single['inference'] == list(range(23))


def test_the_same_script_in_one_process_is_unchanged(
    tmp_path: pathlib.Path, registry_dir: pathlib.Path
) -> None:
    cwd = work(tmp_path, 'plain')
    done = plain(cwd)
    assert done.returncode == 0, done.stderr
    out = result(cwd)
    assert out['world_size'] == 1 and out['group'] == 1
    assert out['batches'] == 20 and out['steps'] == 60
    (record,) = records(registry_dir)
    assert record['world_size'] == 1
    assert 'processes' not in record['sessions'][0]
    reference = reference_test_metrics(cwd / 'weights.pt')
    assert out['test']['MSE'] == pytest.approx(reference['MSE'], rel=1e-6)


def test_a_killed_job_relaunched_ends_bit_identical(
    tmp_path: pathlib.Path, registry_dir: pathlib.Path
) -> None:
    # dropout draws random numbers: each rank's generator must resume as well
    whole = work(tmp_path, 'whole')
    done = one_node(
        whole, DRYTORCH_REGISTRY_DIR=str(tmp_path / 'other'), JOB_DROPOUT='0.3'
    )
    assert done.returncode == 0, done.stdout[-4000:]

    cwd = work(tmp_path, 'killed')
    # the 5th checkpoint is at step 15, batch 5 of epoch 2: inside an epoch
    killed = one_node(cwd, JOB_DROPOUT='0.3', JOB_KILL_AT='5')
    assert killed.returncode != 0
    assert not (cwd / 'result.json').exists()
    (record,) = records(registry_dir)
    assert record['status'] == 'running'  # as SIGKILL left it: read as crashed
    relaunched = one_node(cwd, JOB_DROPOUT='0.3')
    assert relaunched.returncode == 0, relaunched.stdout[-4000:]
    assert 'Training Model resumed from epoch 1, to 3.' in relaunched.stdout
    assert 'epoch 1 batch 5 loaded' in relaunched.stdout
    (record,) = records(registry_dir)
    assert record['status'] == 'completed' and len(record['sessions']) == 2
    assert result(cwd)['id'] == record['id']
    expected = torch.load(whole / 'weights.pt', weights_only=True)
    resumed = torch.load(cwd / 'weights.pt', weights_only=True)
    assert expected.keys() == resumed.keys()
    for key, value in expected.items():
        assert torch.equal(value, resumed[key]), key
    assert result(cwd)['test'] == result(whole)['test']


def test_step_control_agrees_on_every_rank_and_resumes_exactly(
    tmp_path: pathlib.Path,
) -> None:
    # EMA weights, a per-step OneCycleLR, validation and early stopping every
    # 4 steps, step budgets that pause epochs: killed at its 5th checkpoint
    # (step 15, inside epoch 2) and relaunched, the job ends as the whole one
    whole = work(tmp_path, 'whole')
    env = {'JOB_STEP_CONTROL': '1', 'JOB_EPOCHS': '6'}
    done = one_node(whole, DRYTORCH_REGISTRY_DIR=str(tmp_path / 'other'), **env)
    assert done.returncode == 0, done.stdout[-4000:]
    finals = [json.loads((whole / f'final_{r}.json').read_text()) for r in (0, 1)]
    assert finals[0] == {**finals[1], 'world': [0, 2]}  # same steps, rate, stop
    cwd = work(tmp_path, 'killed')
    assert one_node(cwd, JOB_KILL_AT='5', **env).returncode != 0
    relaunched = one_node(cwd, **env)
    assert relaunched.returncode == 0, relaunched.stdout[-4000:]
    assert 'epoch 1 batch 5 loaded' in relaunched.stdout
    assert result(cwd)['steps'] == result(whole)['steps']
    expected = torch.load(whole / 'weights.pt', weights_only=True)
    resumed = torch.load(cwd / 'weights.pt', weights_only=True)
    for key, value in expected.items():
        assert torch.equal(value, resumed[key]), key
    assert result(cwd)['test'] == result(whole)['test']  # the EMA weights'


def test_both_ranks_resume_an_explicit_id(
    tmp_path: pathlib.Path, registry_dir: pathlib.Path
) -> None:
    cwd = work(tmp_path, 'fixed')
    done = one_node(cwd, JOB_RUN_ID='fixed', JOB_EPOCHS='1')
    assert done.returncode == 0, done.stdout[-4000:]
    # the second launch resumes it twice: once at its start, once more in
    # the same processes, which keep their process group
    done = one_node(cwd, JOB_RUN_ID='fixed', JOB_EPOCHS='2', JOB_AGAIN_UNTIL='3')
    assert done.returncode == 0, done.stdout[-4000:]
    (record,) = records(registry_dir)
    assert record['id'] == 'fixed' and record['status'] == 'completed'
    assert [len(s['processes']) for s in record['sessions']] == [2, 2, 2]
    assert result(cwd)['steps'] == 30


@pytest.mark.parametrize('rank', [0, 1])
def test_a_failing_rank_fails_the_run_without_hanging(
    tmp_path: pathlib.Path, registry_dir: pathlib.Path, rank: int
) -> None:
    cwd = work(tmp_path, f'fail{rank}')
    done = one_node(cwd, JOB_FAIL_RANK=str(rank))  # within TIMEOUT, or it fails
    assert done.returncode != 0
    assert f'rank {rank} failed on purpose' in done.stdout
    (record,) = records(registry_dir)
    assert record['status'] == 'failed'
    if rank == 0:
        assert record['error'] == 'ValueError: rank 0 failed on purpose'
    else:  # rank 0 learns of it from the collective that lost its peer
        assert record['error']


def test_two_nodes_of_one_process_with_a_c10d_rendezvous(
    tmp_path: pathlib.Path, registry_dir: pathlib.Path
) -> None:
    cwd = work(tmp_path, 'nodes')
    endpoint = f'127.0.0.1:{free_port()}'
    args = (
        '--nnodes=2',
        '--nproc_per_node=1',
        '--rdzv_backend=c10d',
        f'--rdzv_endpoint={endpoint}',
        '--rdzv_id=two-nodes',
    )
    nodes = [testing.start_torchrun(JOB, launcher_args=args, cwd=cwd) for _ in range(2)]
    try:
        done = [testing.wait_torchrun(node, TIMEOUT) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                testing.stop_torchrun(node)
    outputs = [finished.stdout[-4000:] for finished in done]
    assert [node.returncode for node in nodes] == [0, 0], outputs
    (record,) = records(registry_dir)
    assert record['status'] == 'completed' and record['world_size'] == 2
    out = result(cwd)
    assert out['batches'] == 10
    reference = reference_test_metrics(cwd / 'weights.pt')
    assert out['test']['MSE'] == pytest.approx(reference['MSE'], rel=1e-6)


def test_early_stopping_and_plateaus_decide_alike_on_every_rank(
    tmp_path: pathlib.Path,
) -> None:
    cwd = work(tmp_path, 'plateau')
    # and with a process group the script initialised itself
    done = one_node(cwd, JOB_PLATEAU='1', JOB_EPOCHS='30', JOB_OWN_GROUP='1')
    assert done.returncode == 0, done.stdout[-4000:]
    finals = [json.loads((cwd / f'final_{rank}.json').read_text()) for rank in (0, 1)]
    assert finals[0] == {**finals[1], 'world': [0, 2]}
    assert finals[1]['world'] == [1, 2]
    assert finals[0]['epoch'] < 30 and finals[0]['terminated']  # stopped early
    assert finals[0]['lr'] < 0.01  # and the plateaus lowered the rate


def test_accumulation_synchronises_once_per_window(tmp_path: pathlib.Path) -> None:
    cwd = work(tmp_path, 'accumulate')
    # a compiled model too: DDP wraps the module, torch.compile the wrapper
    done = one_node(cwd, JOB_ACCUMULATE='3', JOB_COMPILE='eager')
    assert done.returncode == 0, done.stdout[-4000:]
    finals = [json.loads((cwd / f'final_{rank}.json').read_text()) for rank in (0, 1)]
    # 10 batches an epoch in windows of 3, 3, 3, 1: 4 steps, 4 gradient syncs
    for final in finals:
        assert final['steps'] == 12 and final['syncs'] == 12


def test_a_hung_rank_fails_the_run_after_the_timeout(
    tmp_path: pathlib.Path, registry_dir: pathlib.Path
) -> None:
    cwd = work(tmp_path, 'hang')
    # rank 1 sleeps 60 s; rank 0's next collective gives up after 4
    done = one_node(cwd, JOB_HANG_RANK='1', DRYTORCH_DISTRIBUTED_TIMEOUT='4')
    assert done.returncode != 0
    (record,) = records(registry_dir)
    assert record['status'] == 'failed'
    assert record['error']


def test_a_torch_loader_gets_its_epochs_or_a_warning(tmp_path: pathlib.Path) -> None:
    cwd = work(tmp_path, 'torch_loader')
    done = one_node(cwd, JOB_TORCH_LOADER='1')
    assert done.returncode == 0, done.stdout[-4000:]
    for rank in (0, 1):
        final = json.loads((cwd / f'final_{rank}.json').read_text())
        assert final['set_epoch'] == [1, 2, 3]  # before each epoch, on every rank
        assert final['find_unused'] is True  # Model's distributed_options
    # the second trainer's loader has no DistributedSampler: said once per rank
    assert done.stdout.count('has no DistributedSampler') == 2


def test_sigterm_to_the_launcher_ends_the_run_failed(
    tmp_path: pathlib.Path, registry_dir: pathlib.Path
) -> None:
    """``scancel`` or a preemption: torchrun gets SIGTERM and forwards it."""
    cwd = work(tmp_path, 'sigterm')
    process = testing.start_torchrun(JOB, cwd=cwd, env={'JOB_HANG_RANK': '0'})
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (cwd / 'hanging_0').exists():  # rank 0 sleeps in epoch 2
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        output = testing.wait_torchrun(process, TIMEOUT).stdout
    finally:
        if process.poll() is None:
            testing.stop_torchrun(process)
    assert process.returncode != 0
    (record,) = records(registry_dir)
    assert record['status'] == 'failed', output[-4000:]
    assert record['error'].startswith('TerminatedError: terminated by signal 15')


def test_a_run_created_on_rank_0_alone_fails_with_the_fix(
    tmp_path: pathlib.Path,
) -> None:
    cwd = work(tmp_path, 'rank0')
    env = {'JOB_OWN_GROUP': '1', 'JOB_RANK0_ONLY': '1', 'JOB_GROUP_TIMEOUT': '4'}
    done = one_node(cwd, **env)
    assert done.returncode != 0
    assert 'did not all reach create_run()' in done.stdout
    assert 'do not guard it with "if rank == 0"' in done.stdout


def test_a_job_past_its_timeout_is_killed_workers_included(
    tmp_path: pathlib.Path,
) -> None:
    script = tmp_path / 'sleeper.py'
    script.write_text(
        'import os, pathlib, time\n'
        'pathlib.Path(f\'pid_{os.environ["RANK"]}\').write_text(str(os.getpid()))\n'
        'time.sleep(600)\n'
    )
    process = testing.start_torchrun(script, cwd=tmp_path)
    deadline = time.monotonic() + TIMEOUT
    while len(list(tmp_path.glob('pid_*'))) < 2:
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    with pytest.raises(TimeoutError, match='did not end within 1 s'):
        testing.wait_torchrun(process, timeout=1)
    assert process.poll() is not None
    for path in tmp_path.glob('pid_*'):
        pid = int(path.read_text())
        deadline = time.monotonic() + 30
        while pathlib.Path(f'/proc/{pid}').exists() and _running(pid):
            assert time.monotonic() < deadline, f'worker {pid} still runs'
            time.sleep(0.2)


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent does not)."""
    try:
        return pathlib.Path(f'/proc/{pid}/stat').read_text().split(') ')[1][0] != 'Z'
    except (OSError, IndexError):
        return False
