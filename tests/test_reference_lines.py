"""Reading the results files that benchmark scripts write (not the grid runner's ledgers)."""
import json

import pytest

from cbam_tutorial.book import reference
from cbam_tutorial.book.reference import reference_lines, reference_names


def test_every_recipe_ablation_line_is_read_with_its_variant():
    names = reference_names("train/recipe-ablation-*.jsonl")
    for name in names:
        lines = reference_lines(name)
        assert lines and all(isinstance(line["variant"], str) for line in lines)
        assert all(0 < line["val_accuracy"] < 1 for line in lines)
    assert "train/recipe-ablation-10ep-round3.jsonl" in names
    round3 = reference_lines("train/recipe-ablation-10ep-round3.jsonl")  # chapter 5's table
    assert "full recipe" in {line["variant"] for line in round3}


def test_a_torn_line_is_an_error_that_names_it(tmp_path, monkeypatch):
    monkeypatch.setattr(reference, "results_dir", lambda: tmp_path)
    (tmp_path / "pieces.jsonl").write_text(json.dumps({"variant": "a"}) + "\n\n" + '{"variant": "b"')
    with pytest.raises(ValueError, match=r"pieces.jsonl, line 3: not JSON .*results/README.md"):
        reference_lines("pieces.jsonl")


def test_a_missing_file_says_where_results_come_from(tmp_path, monkeypatch):
    monkeypatch.setattr(reference, "results_dir", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match="ship with the repository"):
        reference_lines("train/none.jsonl")
