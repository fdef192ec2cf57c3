"""The launch recipes of examples/: the Slurm scripts parse (`bash -n`), their dry runs (DRY_RUN=1 with Slurm's variables faked) print the commands
they would launch, and every printed command, every example in their headers and the Kubernetes Indexed Job's command are accepted by the
`deepfake-nb` parser with the values intended (shard i of n, one TF_CONFIG per node)."""
import os, re, json, shlex, subprocess
from pathlib import Path
import pytest, yaml
from conftest import REPO
from deepfake_nb.pipeline import parse_command

EX = REPO/'examples'
SCRIPTS = ('slurm_preprocess.sh', 'slurm_train.sh')

def _env(**kw):
    "This environment without Slurm's variables (a test may run inside a Slurm job), plus `kw`"
    return {**{k: v for k, v in os.environ.items() if not k.startswith(('SLURM', 'TF_CONFIG'))}, 'PATH': os.environ['PATH'], **kw}

def _dry(script, *args, **env) -> str:
    r = subprocess.run(['bash', str(EX/script), *args], env=_env(DRY_RUN='1', **env), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout

def _commands(out) -> list[list[str]]:
    "The command lines a dry run printed ('+ ' and the command, shell-quoted)"
    return [shlex.split(l[2:]) for l in out.splitlines() if l.startswith('+ ')]

def _accepted(argv, command):
    "`argv` is a `deepfake-nb <command> ...` line the CLI parser accepts (it exits on an unknown option or a bad value); its settings"
    assert Path(argv[0]).name == 'deepfake-nb', argv
    cmd, values, _ = parse_command(argv[1:])
    assert cmd == command, argv
    return values

@pytest.mark.parametrize('script', SCRIPTS)
def test_scripts_parse(script):
    r = subprocess.run(['bash', '-n', str(EX/script)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert os.access(EX/script, os.X_OK), f'{script} is not executable'

def test_preprocess_array_dry_run():
    "Task i of an array of 4 runs shard i of 4 (also when the array starts at 1); options pass through; without options: the demo"
    for first in (0, 1):
        for task in range(first, first + 4):
            out = _dry('slurm_preprocess.sh', '--dataset', 'celebdf', '--features', 'mobilenetv2', 'resnet50', '--frames', '8',
                       SLURM_ARRAY_TASK_ID=str(task), SLURM_ARRAY_TASK_MIN=str(first), SLURM_ARRAY_TASK_COUNT='4', SLURM_CPUS_PER_TASK='6')
            (argv,) = _commands(out)
            v = _accepted(argv, 'preprocess')
            assert (v['shard'], v['num_shards'], v['num_workers']) == (task - first, 4, 6)
            assert (v['dataset'], v['features'], v['frames']) == ('celebdf', 'mobilenetv2 resnet50', 8)
    (argv,) = _commands(_dry('slurm_preprocess.sh', SLURM_ARRAY_TASK_ID='0', SLURM_ARRAY_TASK_COUNT='2'))
    v = _accepted(argv, 'preprocess')
    assert (v['dataset'], v['features'], v['num_workers']) == ('demo', 'mobilenetv2', 0)     # no SLURM_CPUS_PER_TASK: one process per core it may use
    r = subprocess.run(['bash', str(EX/'slurm_preprocess.sh')], env=_env(DRY_RUN='1'), capture_output=True, text=True)
    assert r.returncode != 0 and 'sbatch --array' in r.stderr

def test_train_multinode_dry_run():
    "One TF_CONFIG per node (Slurm's node list expanded, task i = node i) and the same `deepfake-nb train` command on each"
    out = _dry('slurm_train.sh', '--dataset', 'celebdf', '--backbone', 'resnet50', '--mode', 'finetune', '--worker-timeout', '300',
               SLURM_JOB_NODELIST='gpu[01-02],cpu7', SLURM_NNODES='3', PORT='2222')
    configs = [json.loads(l.partition('=')[2]) for l in out.splitlines() if l.startswith('TF_CONFIG=')]
    cmds = _commands(out)
    assert len(configs) == len(cmds) == 3
    for i, (cfg, argv) in enumerate(zip(configs, cmds)):
        assert cfg == {'cluster': {'worker': ['gpu01:2222', 'gpu02:2222', 'cpu7:2222']}, 'task': {'type': 'worker', 'index': i}}
        v = _accepted(argv, 'train')
        assert (v['dataset'], v['backbone'], v['mode'], v['worker_timeout']) == ('celebdf', 'resnet50', 'finetune', 300)
    r = subprocess.run(['bash', str(EX/'slurm_train.sh')], env=_env(DRY_RUN='1', SLURM_JOB_NODELIST='gpu01', SLURM_NNODES='1'),
                       capture_output=True, text=True)
    assert r.returncode == 2 and 'needs --nodes=2 or more' in r.stderr

def _header(script) -> str: return ''.join(l for l in (EX/script).read_text().splitlines(keepends=True) if l.startswith('#'))

@pytest.mark.parametrize('script', SCRIPTS)
def test_header_examples(script):
    "The dry-run line in each script's header runs as written, and its sbatch lines' options are accepted"
    head = _header(script)
    dry = [l.strip('# \n') for l in head.splitlines() if l.lstrip('# ').startswith('DRY_RUN=1')]
    assert dry, f'{script} has no dry-run example in its header'
    for line in dry:
        r = subprocess.run(['bash', '-c', line], env=_env(), cwd=REPO, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and _commands(r.stdout), (line, r.stderr)
        for argv in _commands(r.stdout): _accepted(argv, 'preprocess' if 'preprocess' in script else 'train')
    sb = [shlex.split(l.split(script, 1)[1].strip().rstrip(')')) for l in head.splitlines() if 'sbatch' in l and f'examples/{script}' in l]
    assert sb, f'{script} has no sbatch example in its header'
    for args in sb: _accepted(['deepfake-nb', 'preprocess' if 'preprocess' in script else 'train', *args], 'preprocess' if 'preprocess' in script else 'train')

def test_kubernetes_indexed_job():
    "A batch/v1 Indexed Job whose pod i runs `deepfake-nb preprocess --shard i --num-shards <completions>` (its index from the Job's annotation)"
    docs = [d for d in yaml.safe_load_all((EX/'k8s_preprocess_job.yaml').read_text()) if d]
    (job,) = docs
    assert (job['apiVersion'], job['kind']) == ('batch/v1', 'Job')
    spec = job['spec']
    assert spec['completionMode'] == 'Indexed' and spec['template']['spec']['restartPolicy'] == 'Never'
    (c,) = spec['template']['spec']['containers']
    env = {e['name']: e for e in c['env']}
    argv = c['command'] + c['args']
    refs = set(re.findall(r'\$\((\w+)\)', ' '.join(argv)))
    assert refs <= set(env), refs - set(env)             # Kubernetes expands $(NAME) from the container's env
    (idx,) = [n for n, e in env.items() if e.get('valueFrom', {}).get('fieldRef', {}).get('fieldPath') ==
              "metadata.annotations['batch.kubernetes.io/job-completion-index']"]
    for i in (0, spec['completions'] - 1):
        v = _accepted([a.replace(f'$({idx})', str(i)) for a in argv], 'preprocess')
        assert (v['shard'], v['num_shards']) == (i, spec['completions'])
        assert v['features'] and v['dataset']
    assert spec['parallelism'] <= spec['completions']
    mounts = {m['mountPath'] for m in c['volumeMounts']}
    assert env['DEEPFAKE_NB_HOME']['value'] in mounts     # the suite's home is the shared volume
