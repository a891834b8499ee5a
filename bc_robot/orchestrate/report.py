"""Report folders: Markdown + PNG + JSON written from evaluation results (pure: numpy,
OpenCV, no rclpy)."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Sequence

from bc_robot.orchestrate import draw
from bc_robot.orchestrate.stats import EpisodeOutcome, difference_interval, wilson_interval


def fmt(value: Any, digits: int = 1, unit: str = '') -> str:
    """A number for a table: NaN/None → '–'."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return '–'
    return f'{value:.{digits}f}{unit}'


def fmt_int(value: Any) -> str:
    return '–' if value is None else str(value)


def rate_text(successes: int, episodes: int) -> str:
    if episodes == 0:
        return '–'
    lo, hi = wilson_interval(successes, episodes)
    return (f'{successes}/{episodes} ({100 * successes / episodes:.0f} %, 95 % CI '
            f'{100 * lo:.0f}–{100 * hi:.0f} %)')


def write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=1, allow_nan=True, default=str) + '\n')
    return path


def episode_figure_input(outcomes: Sequence[EpisodeOutcome], limit: int = 8
                         ) -> list[dict[str, Any]]:
    return [{'path': o.path, 'chunks': o.chunks, 'success': o.success, 'scene': o.scene}
            for o in outcomes[:limit] if o.error is None]


def demo_report(out: Path, result, model: Path, settings: dict[str, Any],
                dump: dict[str, Any] | None) -> Path:
    """`bc-robot demo` report: report.md, latency_histogram.png, paths.png,
    camera_start.png / camera_end.png, summary.json, episodes.json."""
    out.mkdir(parents=True, exist_ok=True)
    s, latency = result.summary, result.latency
    samples = [1e3 * v for v in (dump or {}).get('samples', {}).get('obs_to_target_s', [])]
    obs = latency.get('obs_to_target_ms', {})
    figures = []
    draw.histogram_png(out / 'latency_histogram.png', samples, 'observation -> target latency',
                       'ms', {'p50': obs.get('p50', math.nan), 'p99': obs.get('p99', math.nan)})
    figures.append(('Observation → target latency', 'latency_histogram.png'))
    draw.paths_png(out / 'paths.png', episode_figure_input(result.outcomes))
    figures.append(('End-effector paths and predicted chunks', 'paths.png'))
    for tag in ('start', 'end'):
        if tag in result.frames:
            draw.save_rgb(out / f'camera_{tag}.png', result.frames[tag])
            figures.append((f'Front camera, first episode {tag}', f'camera_{tag}.png'))
    write_json(out / 'summary.json', {'model': str(model), 'settings': settings, **result.to_json()})
    write_json(out / 'episodes.json', [o.to_json() for o in result.outcomes])
    lines = [
        '# bc_robot demo report', '',
        f'{time.strftime("%Y-%m-%d %H:%M:%S")} · model `{model}` · {settings.get("task")} task · '
        f'executor `{settings.get("executor")}` · scripted expert '
        f'{"may intervene (correction mode)" if settings.get("intervene") else "watching only"}',
        '', '| | |', '| --- | --- |',
        f'| success rate | {rate_text(s["successes"], s["episodes"])} |',
        f'| succeeded without intervention | {s["autonomous_successes"]}/{s["episodes"]} |',
        f'| interventions | {s["interventions"]} in {s["episodes_with_intervention"]} '
        f'episode(s), {fmt(s["intervention_time_s"])} s with the human |',
        f'| time to success (median) | {fmt(s["time_to_success_s"]["p50"])} s (sim) |',
        f'| obs → target latency p50 / p99 / max | {fmt(obs.get("p50"))} / '
        f'{fmt(obs.get("p99"))} / {fmt(obs.get("max"))} ms (n = {obs.get("n", 0)}) |',
        f'| inference p50 / p99 | {fmt(latency.get("inference_ms", {}).get("p50"))} / '
        f'{fmt(latency.get("inference_ms", {}).get("p99"))} ms |',
    ]
    chunking = result.chunking
    if chunking:
        lines.append(f'| idle ticks | {chunking["idle_ticks"]} of '
                     f'{chunking["ticks"]} ({100 * chunking["idle_fraction"]:.0f} %) |')
        lines.append(f'| largest chunk-boundary step | '
                     f'{fmt(chunking["largest_boundary_step_mm"])} mm (typical step '
                     f'{fmt(chunking["typical_step_mm"])} mm) |')
    lines += ['', '## Episodes', '', '| # | seed | outcome | time (s) | interventions |',
              '| --- | --- | --- | --- | --- |']
    for o in result.outcomes:
        outcome = 'error: ' + o.error if o.error else ('success' if o.success else
                                                        'timed out' if o.timed_out else 'failed')
        lines.append(f'| {o.index} | {o.seed} | {outcome} | {fmt(o.duration)} | '
                     f'{o.interventions} |')
    lines.append('')
    for title, name in figures:
        lines += [f'## {title}', '', f'![{title}]({name})', '']
    lines += ['Node logs: `' + str(result.log_path) + '`. Raw figures: `summary.json`, '
              'per-episode paths and chunks: `episodes.json`.', '']
    path = out / 'report.md'
    path.write_text('\n'.join(lines))
    return path


def loop_table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of the loop's evaluations, each round set against the BC start: the
    points of success gained, with the 95 % interval of that difference, and the labelled
    samples added (HG-DAgger's two figures)."""
    base = next((r for r in rows if r['variant'] == 'bc'), None)
    lines = ['| variant | round | success | vs bc (points, 95 % CI) '
             '| labelled samples (demo + correction)'
             ' | labelled vs bc | robot samples | interventions while collecting |',
             '| --- | --- | --- | --- | --- | --- | --- | --- |']
    for r in rows:
        samples = r['samples']
        gain, added = _against(r, base)
        lines.append(f'| {r["variant"]} | {r["round"]} | {rate_text(r["successes"], r["episodes"])}'
                     f' | {gain} | {samples["labelled"]} ({samples["demo"]} + '
                     f'{samples["correction"]}) | {added} | {samples["robot"]} | '
                     f'{fmt_int(r.get("collection_interventions"))} |')
    return '\n'.join(lines)


def _against(row: dict[str, Any], base: dict[str, Any] | None) -> tuple[str, str]:
    """(success points gained with their 95 % interval, labelled samples added in %) of a
    round against the BC row."""
    if base is None or row is base or not row['episodes'] or not base['episodes']:
        return '–', '–'
    points = _success_percent(row) - _success_percent(base)
    low, high = difference_interval(row['successes'], row['episodes'], base['successes'],
                                    base['episodes'])
    labelled = base['samples']['labelled']
    added = (f'{100 * (row["samples"]["labelled"] - labelled) / labelled:+.1f} %'
             if labelled else '–')
    return f'{points:+.0f} ({100 * low:+.0f} to {100 * high:+.0f})', added


def _success_percent(row: dict[str, Any]) -> float:
    return 100 * row['successes'] / max(1, row['episodes'])


def loop_figure(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Success rate against round and against labelled samples, one line per variant."""
    variants = list(dict.fromkeys(r['variant'] for r in rows))
    by_round, by_samples = [], []
    for v in variants:
        # round 0 (the BC policy) is shared: every variant's line starts there
        mine = sorted([r for r in rows if r['variant'] in (v, 'bc')], key=lambda r: r['round'])
        rates = [_success_percent(r) for r in mine]
        by_round.append((v, [r['round'] for r in mine], rates))
        by_samples.append((v, [r['samples']['labelled'] for r in mine], rates))
    series_round = [s for s in by_round if s[0] != 'bc'] or by_round
    series_samples = [s for s in by_samples if s[0] != 'bc'] or by_samples
    return draw.lines_png(path, [
        {'title': 'success vs HG-DAgger round', 'xlabel': 'round', 'ylabel': 'success %',
         'ylim': (0, 100), 'series': series_round},
        {'title': 'success vs labelled samples', 'xlabel': 'labelled samples',
         'ylabel': 'success %', 'ylim': (0, 100), 'series': series_samples}])
