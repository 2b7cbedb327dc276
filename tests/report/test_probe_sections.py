"""The report's probe, gate-readout and steering sections show every effect beside its null.

Fast checks on hand-made study results (what the text says when a null applies, when it does not, and the
by-construction note either way; the figures draw the null lines); one slow check on the trained organism.
"""
from __future__ import annotations

import pytest

from mixprobe.mixture.studies import GateReadout, ProbeSweep


def _variant(score: str, fit: list[str], **kw) -> dict:
    return {"applies": True, "fit_phases": fit, "score_phases": [score], "spearman": kw.get("spearman", -0.04),
            "pooled_spearman": 0.72, "mean_abs_error": kw.get("mae", 0.77), "pooled_mean_abs_error": 0.09,
            "target_range": kw.get("target_range", 0.023), "rows": []}


def test_leave_one_run_out_section_reports_the_null_or_says_it_does_not_apply():
    from mixprobe.report.probe_sections import _held_out_run_section

    one = GateReadout("resid_post.1", [], 0.97, held_out_run=[{"applies": False, "reason": "only one RL phase"}])
    sec = _held_out_run_section(one)
    assert sec.text.startswith("Does not apply: only one RL phase.") and sec.table is None
    two = GateReadout("resid_post.1", [], 0.97, held_out_run=[_variant("rl_B", ["sft", "rl"]),
                                                              _variant("rl", ["sft", "rl_B"], spearman=0.9, mae=0.05,
                                                                       target_range=0.6)])
    sec = _held_out_run_section(two)
    assert "fit on sft + rl, scored on rl_B (never seen): Spearman -0.04 (pooled probe on the same rows: 0.72)" \
        in sec.text
    assert "mean |readout − target| 0.77 (pooled: 0.09)" in sec.text
    assert sec.text.count("ranks sampling noise") == 1          # only the variant whose target hardly moves
    assert "far above the pooled one" in sec.text               # 0.77 > max(0.1, 2 × 0.09)
    assert [r["score_phases"] for r in sec.table] == ["rl_B", "rl"] and "rows" not in sec.table[0]
    fine = GateReadout("s", [], 0.97, held_out_run=[_variant("rl", ["sft"], mae=0.05, target_range=0.6)])
    assert "far above" not in _held_out_run_section(fine).text


def test_steering_text_names_the_null_and_the_by_construction_reason():
    from mixprobe.report.probe_sections import _steering_text

    rows = [{"alpha": 0.0, "m2_frequency_B": 0.0, "null_m2_frequency_B_mean": 0.0, "null_m2_frequency_B_max": 0.0},
            {"alpha": 12.0, "m2_frequency_B": 1.0, "null_m2_frequency_B_mean": 0.04, "null_m2_frequency_B_max": 0.36}]
    info = {"toward": "m2", "n_null": 8, "by_construction": True,
            "reason": "vocab 24 ≤ d_model 64: W_U is right-invertible, any logit change is reachable from final_norm"}
    text = _steering_text({"rl: toward m2": rows}, {"rl: toward m2": info})
    assert "8 random directions of the steering vector's norm" in text
    assert "rl: toward m2 at α = 12, share of m2 per cue — B: 1.00 vs null 0.04 (max 0.36)" in text
    assert f"By construction: {info['reason']}." in text and "logit bias" in text
    big = dict(info, by_construction=False, reason="vocab 100 > d_model 64: W_U is not right-invertible")
    text = _steering_text({"rl: toward m2": rows}, {"rl: toward m2": big})
    assert "By construction" not in text and "Not by construction: vocab 100 > d_model 64" in text
    assert "random directions" not in _steering_text({"c": rows[:1]}, {"c": dict(info, n_null=0)})


def test_figures_draw_the_null_lines():
    import matplotlib

    matplotlib.use("Agg")
    from mixprobe.report.probe_sections import plot_dose_response, plot_probe_sweep

    acc = {"c1": {"a": 1.0, "b": 0.9}, "c2": {"a": 1.0, "b": 1.0}}
    null = {c: {"a": 0.5, "b": 0.48} for c in acc}
    sweep = ProbeSweep(["a", "b"], acc, null_accuracy=null, chance={"c1": 0.5, "c2": 0.5}, n_permutations=20)
    ax = plot_probe_sweep(sweep).axes[0]
    assert sum(line.get_linestyle() == ":" for line in ax.lines) == 2          # one control curve per checkpoint
    assert sum(line.get_linestyle() == ":" for line in plot_probe_sweep(
        ProbeSweep(["a", "b"], acc)).axes[0].lines) == 0
    rows = [{"alpha": a, "accuracy_A": 1 - a / 12, "accuracy_B": a / 12, "null_accuracy_A_mean": 0.5,
             "null_accuracy_A_max": 0.6, "null_accuracy_B_mean": 0.1, "null_accuracy_B_max": 0.2} for a in (0, 12)]
    ax = plot_dose_response({"x": rows}).axes[0]
    assert [line.get_linestyle() for line in ax.lines] == ["-", "--", ":", "-", "--", ":"]


@pytest.mark.slow
def test_probe_sections_on_the_organism_show_each_null(organism_run):
    from mixprobe.report.analysis_sections import patching_sections
    from mixprobe.report.probe_sections import probe_sections

    secs, data = probe_sections(organism_run, alphas=(0.0, 12.0), n_null=2)
    by = {s.title: s for s in secs}
    assert list(by) == ["Probe accuracy by layer × checkpoint", "Gate readout per cue",
                        "Gate readout: leave one run out", "Steering dose-response"]
    probe = by["Probe accuracy by layer × checkpoint"]
    assert "shuffled among the training rows" in probe.text and "against chance 0.50" in probe.text
    assert {"null_accuracy", "p_value", "chance"} <= set(probe.table[0])
    assert "scored on rl (never seen)" in by["Gate readout: leave one run out"].text
    assert "leave one run out: scored on rl Spearman" in by["Gate readout per cue"].text
    steer = by["Steering dose-response"].text
    assert "2 random directions" in steer
    assert "By construction: vocab 24 ≤ d_model 64: W_U is right-invertible" in steer
    assert all(info["by_construction"] and info["n_null"] == 2 for info in data["steering_info"].values())
    assert all("null_accuracy_B_mean" in r for rows in data["steering"].values() for r in rows)
    psecs, pdata = patching_sections(organism_run)
    assert "By construction: vocab 24 ≤ d_model 64" in psecs[0].text and pdata["subspace"]["by_construction"]
