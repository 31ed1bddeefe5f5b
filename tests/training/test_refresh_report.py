import json

from twotower.training.report import read_refresh_log, refresh_section


def _round(generation, step, rank, overlap):
    return {
        "generation": generation,
        "step": step,
        "adopted_at_step": step + 3,
        "first_step": step + 4,
        "started": 100.0 * generation,
        "finished": 100.0 * generation + 42,
        "queries": 809,
        "encode_s": 40.0,
        "positive_rank_mean": rank,
        "positive_rank_median": 2.0,
        "overlap_with_previous": overlap,
        "notes": [],
    }


def test_the_report_tabulates_and_plots_the_rounds_and_names_the_failed_ones(tmp_path):
    entries = [
        _round(1, 6, 31.2, None),
        {"generation": 2, "step": 12, "failed": -9},
        _round(3, 18, 20.4, 0.02),
    ]
    (tmp_path / "refresh_log.jsonl").write_text("".join(json.dumps(e) + "\n" for e in entries))
    adopted, failed = read_refresh_log(tmp_path / "refresh_log.jsonl")
    assert [r["generation"] for r in adopted] == [1, 3] and failed[0]["generation"] == 2
    text = refresh_section(tmp_path)
    assert "| 1 | 6 | 10 | 809 | 31.2 / 2 |  | 40 | 42 |" in text
    assert "| 3 | 18 | 22 | 809 | 20.4 / 2 | 2.0% | 40 | 42 |" in text
    assert "round 2 (weights of step 12) failed with exit status -9" in text
    assert (tmp_path / "refresh_rounds.png").stat().st_size > 10_000


def test_a_run_without_refresh_has_no_refresh_section(tmp_path):
    assert refresh_section(tmp_path) == ""


def test_the_report_gives_the_synthetic_steps_keep_rates():
    from twotower.training.report import synthetic_section

    info = {
        "synthetic_step": {
            "generation": {
                "tasks": 12,
                "documents": 2,
                "seconds": 60.0,
                "tokens_per_second": 9.5,
                "written": 8,
                "dropped": {"prompt_echo": 4},
            },
            "filter": {
                "keep_rates": [
                    {"type": "all", "generated": 8, "retrieval": 6, "retrieval_rate": 0.75}
                ]
            },
        }
    }
    text = synthetic_section(info)
    assert "12 completions for 2 passages in 1.0 min (9.5 tokens/s); 8 passed" in text
    assert "| all | 8 | 6 (75%) |" in text
    assert synthetic_section({}) == ""
