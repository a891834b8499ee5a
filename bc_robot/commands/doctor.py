"""`bc-robot doctor`: the first thing a new user runs — can this machine run the stack?

Each check reports PASS, WARN or FAIL with a hint saying what to do. Checks that exercise
native libraries (ONNX Runtime providers, torch, MuJoCo's EGL renderer) run in a child
Python process with a timeout, so a crashing driver or a hung GPU init becomes a FAIL line
instead of taking the doctor down. The publish/subscribe check talks to a child process
over real DDS on a private, random domain restricted to localhost, so it neither needs nor
disturbs anything else on the network. Exit code 1 when a required check fails.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

PASS, WARN, FAIL = 'PASS', 'WARN', 'FAIL'

# Where recordings go unless the recorder is told otherwise (BC_ROBOT_DATA overrides).
DEFAULT_RECORD_DIR = os.environ.get('BC_ROBOT_DATA', str(Path('~/bc_robot_data').expanduser()))
DEFAULT_WARN_FREE_GB = 10.0  # ~3 min of two raw 640x480 rgb8 cameras at 30 Hz (55 MB/s)
DEFAULT_MIN_FREE_GB = 1.0
# A round trip on one machine slower than this means something is wrong (no shared memory,
# a loaded machine, a misconfigured RMW): control at 100 Hz would suffer.
ROUND_TRIP_WARN_MS = 20.0


@dataclass
class CheckResult:
    name: str
    status: str
    required: bool
    summary: str
    hint: str
    details: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0


# --- helpers ------------------------------------------------------------------------------

def _run_probe(code: str, timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run `code` in a child interpreter; its last stdout line is a JSON object. Crashes,
    timeouts and non-JSON output become {'error': ...} with the tail of stderr."""
    try:
        proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                              timeout=timeout, env=env or dict(os.environ))
    except subprocess.TimeoutExpired:
        return {'error': f'timed out after {timeout:.0f} s'}
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode == 0 and lines:
        try:
            return json.loads(lines[-1])
        except json.JSONDecodeError:
            pass
    tail = (proc.stderr.strip().splitlines() or ['(no output)'])[-1]
    return {'error': f'probe exited with code {proc.returncode}: {tail[:300]}'}


def _gpu_present() -> bool:
    return Path('/dev/nvidia0').exists() or Path('/proc/driver/nvidia/version').exists()


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables for the duration (rcl reads discovery settings at init)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --- checks -------------------------------------------------------------------------------

def check_python(_args: argparse.Namespace) -> CheckResult:
    version = '.'.join(map(str, sys.version_info[:3]))
    ok = sys.version_info >= (3, 10)
    return CheckResult('python', PASS if ok else FAIL, True,
                       f'Python {version} at {sys.executable}',
                       'bc_robot needs Python >= 3.10; `make env` builds .venv with python3'
                       if not ok else 'run bc-robot from the project venv (.venv/bin/bc-robot)',
                       {'version': version, 'executable': sys.executable,
                        'venv': sys.prefix != sys.base_prefix})


RCLPY_PROBE = textwrap.dedent('''
    import json, os
    from pathlib import Path
    import rclpy
    from rclpy.utilities import get_rmw_implementation_identifier
    version = ''
    try:
        from importlib.metadata import version as dist_version
        version = dist_version('rclpy')
    except Exception:
        pass
    print(json.dumps({'rmw': get_rmw_implementation_identifier(), 'version': version,
                      'rclpy_path': str(Path(rclpy.__file__).parent)}))
''')


def _rclpy_probe(args: argparse.Namespace) -> dict[str, Any]:
    """rclpy imported in a child first: a wrong RMW_IMPLEMENTATION makes rcl call exit()
    while loading, which would end the doctor itself without a word."""
    cached = getattr(args, '_rclpy_probe', None)
    if cached is None:
        cached = _run_probe(RCLPY_PROBE, args.timeout)
        args._rclpy_probe = cached
    return cached


def check_rclpy(args: argparse.Namespace) -> CheckResult:
    result = _rclpy_probe(args)
    distro = os.environ.get('ROS_DISTRO', '')
    details = dict(result, ros_distro=distro, ros_domain_id=os.environ.get('ROS_DOMAIN_ID', '0'),
                   rmw_implementation_env=os.environ.get('RMW_IMPLEMENTATION', ''))
    if 'error' in result:
        return CheckResult('rclpy', FAIL, True, f'rclpy does not load: {result["error"]}',
                           'run `make env` (installs the ROS 2 Kilted wheels), or source your '
                           'ROS 2 install (source /opt/ros/<distro>/setup.bash) before `make env`; '
                           'unset RMW_IMPLEMENTATION unless that middleware is installed', details)
    origin = f'ROS 2 {distro} (sourced)' if distro and '/opt/ros/' in result['rclpy_path'] \
        else 'ROS 2 wheels in this environment'
    return CheckResult('rclpy', PASS, True,
                       f'rclpy {result["version"] or "(version unknown)"} from {origin}, '
                       f'RMW {result["rmw"]}',
                       'choose another middleware with RMW_IMPLEMENTATION=<rmw> if needed; every '
                       'process of the graph must use the same one', details)


ECHO_CHILD = textwrap.dedent('''
    import sys, time
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import String
    ping, pong, deadline = sys.argv[1], sys.argv[2], time.monotonic() + float(sys.argv[3])
    rclpy.init()
    node = rclpy.create_node('bc_doctor_echo')
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(String, pong, qos)
    done = []
    def on_ping(msg):
        if msg.data == 'quit':
            done.append(True)
        else:
            pub.publish(msg)
    node.create_subscription(String, ping, on_ping, qos)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        while not done and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        time.sleep(0.2)  # let the last echo leave before tearing down
    except KeyboardInterrupt:
        pass
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
''')


def check_pubsub(args: argparse.Namespace) -> CheckResult:
    """Round trips between this process and a child echoing a topic, over real DDS."""
    probe = _rclpy_probe(args)
    if 'error' in probe:
        return CheckResult('pubsub', FAIL, True, f'not run: rclpy does not load ({probe["error"]})',
                           'fix the rclpy check first', {'error': probe['error']})
    try:
        import rclpy
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from std_msgs.msg import String
    except Exception as exc:
        return CheckResult('pubsub', FAIL, True, f'cannot import rclpy/std_msgs: {exc}',
                           'fix the rclpy check first', {'error': str(exc)})
    domain = random.SystemRandom().randint(1, 101)
    tag = uuid.uuid4().hex[:8]
    ping, pong = f'/bc_doctor_{tag}/ping', f'/bc_doctor_{tag}/pong'
    discovery = {'ROS_DOMAIN_ID': str(domain), 'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST'}
    child_env = dict(os.environ, **discovery)
    details: dict[str, Any] = {'domain_id': domain, 'messages': args.messages}
    hint = ('two processes could not talk over DDS on localhost: check that /dev/shm is '
            'writable, the loopback interface is up, and RMW_IMPLEMENTATION is the same '
            'everywhere; FASTDDS_BUILTIN_TRANSPORTS=UDPv4 rules out shared memory')
    child = subprocess.Popen(
        [sys.executable, '-c', ECHO_CHILD, ping, pong, str(args.timeout + 10)],
        env=child_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    context = Context()
    node = executor = None
    try:
        with _environ(**discovery):
            rclpy.init(context=context, domain_id=domain, **_no_signal_handlers())
        node = rclpy.create_node(f'bc_doctor_{tag}', context=context)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        publisher = node.create_publisher(String, ping, qos)
        replies: dict[str, float] = {}
        node.create_subscription(String, pong,
                                 lambda msg: replies.setdefault(msg.data, time.perf_counter()),
                                 qos)
        deadline = time.monotonic() + args.timeout
        while time.monotonic() < deadline and child.poll() is None and not (
                publisher.get_subscription_count() and node.count_publishers(pong)):
            executor.spin_once(timeout_sec=0.05)
        if child.poll() is not None:
            tail = (child.stderr.read().strip().splitlines() or ['(no output)'])[-1]
            return CheckResult('pubsub', FAIL, True,
                               f'echo process exited with code {child.returncode}: {tail}',
                               hint, details)
        if not publisher.get_subscription_count() or not node.count_publishers(pong):
            return CheckResult('pubsub', FAIL, True,
                               f'the two processes did not discover each other within '
                               f'{args.timeout:.0f} s (domain {domain}, localhost)', hint, details)
        latencies = []
        for index in range(args.messages + 1):  # the first is a warm-up
            key = f'{index}'
            sent = time.perf_counter()
            publisher.publish(String(data=key))
            wait_until = time.monotonic() + 2.0
            while key not in replies and time.monotonic() < wait_until:
                executor.spin_once(timeout_sec=0.01)
            if key in replies and index > 0:
                latencies.append((replies[key] - sent) * 1e3)
        publisher.publish(String(data='quit'))
        lost = args.messages - len(latencies)
        details.update(received=len(latencies), lost=lost)
        if not latencies:
            return CheckResult('pubsub', FAIL, True,
                               f'discovered the echo process but none of {args.messages} '
                               f'messages came back', hint, details)
        # rounded once, so the summary text and the JSON figures always agree
        median, worst = round(statistics.median(latencies), 3), round(max(latencies), 3)
        details.update(median_ms=median, max_ms=worst)
        summary = (f'{len(latencies)}/{args.messages} round trips between two processes: '
                   f'median {median:.2f} ms, max {worst:.2f} ms')
        if lost or median > ROUND_TRIP_WARN_MS:
            return CheckResult('pubsub', WARN, True, summary,
                               f'lost messages or a median above {ROUND_TRIP_WARN_MS:g} ms on '
                               f'one machine: check CPU load and shared-memory transport', details)
        return CheckResult('pubsub', PASS, True, summary,
                           'nodes on this machine can talk; on several machines use the same '
                           'ROS_DOMAIN_ID and ROS_AUTOMATIC_DISCOVERY_RANGE=SUBNET', details)
    finally:
        if executor is not None:
            executor.shutdown()
        if node is not None:
            node.destroy_node()
        context.try_shutdown()
        try:
            child.wait(timeout=5)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=5)
        if child.stderr is not None:
            child.stderr.close()


def _no_signal_handlers() -> dict[str, Any]:
    """Keep the doctor's Ctrl-C behaviour: rclpy.init must not take over signals."""
    try:
        from rclpy.signals import SignalHandlerOptions
        return {'signal_handler_options': SignalHandlerOptions.NO}
    except ImportError:  # older rclpy
        return {}


ONNX_PROBE = textwrap.dedent('''
    import json, os, sys, tempfile
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info('y', TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node('Add', ['x', 'x'], ['y'])], 'doctor', [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 13)])
    model.ir_version = 8
    data = model.SerializeToString()
    feed = np.arange(4, dtype=np.float32).reshape(1, 4)
    result = {'version': ort.__version__, 'listed': ort.get_available_providers(), 'loaded': [],
              'failed': {}}
    for provider in result['listed']:
        # Native libraries report why a provider fails on fd 2: catch it per provider.
        with tempfile.TemporaryFile(mode='w+') as log:
            saved = os.dup(2)
            os.dup2(log.fileno(), 2)
            try:
                options = ort.SessionOptions()
                options.log_severity_level = 3
                session = ort.InferenceSession(data, options, providers=[provider])
                used = session.get_providers()
                out = session.run(None, {'x': feed})[0]
                error = None if used and used[0] == provider and np.allclose(out, 2 * feed) \\
                    else f'session fell back to {used}'
            except Exception as exc:
                error = str(exc)
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
            log.seek(0)
            lines = [l.strip() for l in log.read().splitlines() if 'rror' in l or 'ailed' in l]
        if error is None:
            result['loaded'].append(provider)
        else:
            reason = next((l for l in lines if 'with error:' in l), lines[0] if lines else error)
            result['failed'][provider] = reason.split('with error:')[-1].strip()[:240]
    print(json.dumps(result))
''')


def check_onnxruntime(args: argparse.Namespace) -> CheckResult:
    """Create a session on a tiny model with each listed provider; report which really load."""
    result = _run_probe(ONNX_PROBE, args.timeout)
    if 'error' in result:
        return CheckResult('onnxruntime', FAIL, True,
                           f'ONNX Runtime does not work: {result["error"]}',
                           'run `make env` (installs onnxruntime-gpu and onnx from the pinned '
                           'constraints)', result)
    loaded, failed = result['loaded'], result['failed']
    summary = f'onnxruntime {result["version"]}: providers that load: {", ".join(loaded) or "none"}'
    if failed:
        summary += f'; listed but not loadable: {", ".join(failed)}'
    if 'CPUExecutionProvider' not in loaded:
        return CheckResult('onnxruntime', FAIL, True, summary,
                           'the CPU provider must load: reinstall onnxruntime (`make clean-env '
                           'env`)', result)
    gpu_failed = [p for p in ('CUDAExecutionProvider', 'TensorrtExecutionProvider') if p in failed]
    if 'CUDAExecutionProvider' in failed and _gpu_present():
        reason = failed['CUDAExecutionProvider']
        return CheckResult('onnxruntime', WARN, True, summary,
                           f'an NVIDIA GPU is present but CUDA does not load ({reason}): install '
                           f'the CUDA/cuDNN libraries this onnxruntime-gpu needs; policies run on '
                           f'CPU meanwhile', result)
    hint = ('policies run on the CPU provider' + (' (no NVIDIA GPU found, so '
            + ' and '.join(gpu_failed) + ' cannot load)' if gpu_failed else ''))
    return CheckResult('onnxruntime', PASS, True, summary, hint, result)


TORCH_PROBE = textwrap.dedent('''
    import json
    import torch
    cuda = torch.cuda.is_available()
    print(json.dumps({'version': torch.__version__, 'cuda': cuda,
                      'device': torch.cuda.get_device_name(0) if cuda else 'cpu',
                      'threads': torch.get_num_threads()}))
''')


def check_torch(args: argparse.Namespace) -> CheckResult:
    """Optional: only training and the torch debug backend need it."""
    result = _run_probe(TORCH_PROBE, args.timeout)
    if 'error' in result:
        return CheckResult('torch', WARN, False, f'torch unavailable: {result["error"]}',
                           'only training needs torch: pip install torch==2.13.0 (see '
                           'requirements/constraints.txt); deployment runs on ONNX Runtime', result)
    where = f'CUDA on {result["device"]}' if result['cuda'] else 'CPU only'
    return CheckResult('torch', PASS, False, f'torch {result["version"]} ({where})',
                       'train here, or on a GPU box and copy models/<name>/ back', result)


MUJOCO_PROBE = textwrap.dedent('''
    import json, os
    os.environ.setdefault('MUJOCO_GL', 'egl')
    import mujoco
    import numpy as np
    xml = """<mujoco><worldbody><light pos="0 0 2"/>
      <geom type="box" size=".2 .2 .2" rgba="1 0 0 1"/>
      <camera name="view" pos="0 -1.5 0" xyaxes="1 0 0 0 0 1"/></worldbody></mujoco>"""
    model = mujoco.MjModel.from_xml_string(xml)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    renderer = mujoco.Renderer(model, 48, 64)
    try:
        renderer.update_scene(data, camera='view')
        image = renderer.render()
    finally:
        renderer.close()
    centre = image[20:28, 28:36].astype(float).mean(axis=(0, 1))
    print(json.dumps({'version': mujoco.__version__, 'gl': os.environ['MUJOCO_GL'],
                      'shape': list(image.shape), 'centre_rgb': [round(v, 1) for v in centre]}))
''')


def check_mujoco(args: argparse.Namespace) -> CheckResult:
    """Render a red box offscreen; the simulated arm (the embedded default) needs this."""
    env = dict(os.environ)
    env.setdefault('MUJOCO_GL', 'egl')
    result = _run_probe(MUJOCO_PROBE, args.timeout, env)
    hint = ('the simulated arm renders offscreen with MUJOCO_GL=egl (Mesa/NVIDIA EGL); install '
            'libegl1 / libgl1-mesa-dri, or try MUJOCO_GL=osmesa')
    if 'error' in result:
        return CheckResult('mujoco', FAIL, True,
                           f'MuJoCo offscreen rendering failed (MUJOCO_GL={env["MUJOCO_GL"]}): '
                           f'{result["error"]}', hint, result)
    red, green, blue = result['centre_rgb']
    summary = (f'mujoco {result["version"]} rendered {result["shape"][1]}x{result["shape"][0]} '
               f'offscreen with MUJOCO_GL={result["gl"]}')
    if not (red > 50 and red > 2 * max(green, blue)):
        return CheckResult('mujoco', FAIL, True,
                           f'{summary}, but the red test box is not in the image '
                           f'(centre RGB {result["centre_rgb"]})', hint, result)
    return CheckResult('mujoco', PASS, True, summary,
                       'the simulated arm and its cameras can run on this machine', result)


def check_disk(args: argparse.Namespace) -> CheckResult:
    """Free space where episodes will be recorded (the folder may not exist yet)."""
    target = Path(args.record_dir).expanduser().absolute()
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    details: dict[str, Any] = {'record_dir': str(target), 'checked': str(existing),
                               'min_free_gb': args.min_free_gb, 'warn_free_gb': args.warn_free_gb}
    hint = 'record elsewhere: set the recorder\'s output directory (doctor: --record-dir)'
    if not existing.is_dir():
        return CheckResult('disk', FAIL, True,
                           f'cannot record into {target}: {existing} is not a directory',
                           'choose a recording directory that can be created', details)
    if not os.access(existing, os.W_OK | os.X_OK):
        return CheckResult('disk', FAIL, True, f'cannot record into {target}: {existing} is not '
                           f'writable', f'fix its permissions or {hint}', details)
    free_gb = shutil.disk_usage(existing).free / 1e9
    details['free_gb'] = round(free_gb, 2)
    note = '' if existing == target else ' (will be created)'
    summary = f'{free_gb:.1f} GB free for recordings in {target}{note}'
    if free_gb < args.min_free_gb:
        return CheckResult('disk', FAIL, True, f'{summary}: below the {args.min_free_gb:g} GB '
                           f'minimum', f'free some space or {hint}', details)
    if free_gb < args.warn_free_gb:
        return CheckResult('disk', WARN, True, f'{summary}: below {args.warn_free_gb:g} GB, '
                           f'enough for only a few minutes of raw camera data',
                           f'free some space or {hint}', details)
    return CheckResult('disk', PASS, True, summary,
                       'two raw 640x480 rgb8 cameras at 30 Hz take about 3.3 GB per minute',
                       details)


CHECKS: dict[str, Callable[[argparse.Namespace], CheckResult]] = {
    'python': check_python,
    'rclpy': check_rclpy,
    'pubsub': check_pubsub,
    'onnxruntime': check_onnxruntime,
    'torch': check_torch,
    'mujoco': check_mujoco,
    'disk': check_disk,
}


# --- command ------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--json', action='store_true',
                        help='print the results as one JSON object instead of text')
    parser.add_argument('--only', nargs='+', choices=list(CHECKS), metavar='CHECK',
                        help=f'run only these checks ({", ".join(CHECKS)})')
    parser.add_argument('--skip', nargs='+', choices=list(CHECKS), default=[], metavar='CHECK',
                        help='skip these checks')
    parser.add_argument('--record-dir', default=DEFAULT_RECORD_DIR,
                        help=f'where episodes will be recorded (default {DEFAULT_RECORD_DIR}; '
                             f'env BC_ROBOT_DATA)')
    parser.add_argument('--min-free-gb', type=_non_negative, default=DEFAULT_MIN_FREE_GB,
                        help='FAIL below this much free space for recordings (GB)')
    parser.add_argument('--warn-free-gb', type=_non_negative, default=DEFAULT_WARN_FREE_GB,
                        help='WARN below this much free space for recordings (GB)')
    parser.add_argument('--messages', type=int, default=20,
                        help='round trips for the publish/subscribe check')
    parser.add_argument('--timeout', type=float, default=60.0,
                        help='seconds each check may take')


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f'{text!r} must be a number >= 0')
    return value


def run_checks(args: argparse.Namespace) -> list[CheckResult]:
    names = [n for n in (args.only or CHECKS) if n not in args.skip]
    results = []
    for name in names:
        started = time.monotonic()
        try:
            result = CHECKS[name](args)
        except Exception as exc:  # a check must report, never crash the doctor
            result = CheckResult(name, FAIL, True, f'check crashed: {type(exc).__name__}: {exc}',
                                 'please report this with the output of `bc-robot -v doctor`')
        result.duration_s = round(time.monotonic() - started, 3)
        results.append(result)
        if not args.json:
            _print_result(result)
    return results


def _print_result(result: CheckResult) -> None:
    optional = '' if result.required else ' (optional)'
    print(f'[{result.status}] {result.name}{optional}: {result.summary}', flush=True)
    print(f'       hint: {result.hint}', flush=True)


def run(args: argparse.Namespace) -> int:
    if args.messages < 1:
        print(f'bc-robot doctor: --messages {args.messages} must be >= 1', file=sys.stderr)
        return 2
    if not args.json:
        print('bc-robot doctor: checking this machine', flush=True)
    results = run_checks(args)
    failed = [r.name for r in results if r.status == FAIL and r.required]
    if args.json:
        print(json.dumps({'ok': not failed, 'failed': failed,
                          'checks': [asdict(r) for r in results]}, indent=2))
    else:
        counts = {s: sum(r.status == s for r in results) for s in (PASS, WARN, FAIL)}
        verdict = 'ready' if not failed else \
            f'NOT ready (required checks failed: {", ".join(failed)})'
        print(f'doctor: {counts[PASS]} PASS, {counts[WARN]} WARN, {counts[FAIL]} FAIL: '
              f'this machine is {verdict}')
    return 1 if failed else 0
