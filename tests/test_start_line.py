"""Each run's start line names its CPU thread count (results depend on it, README "--jobs")."""
import torch

from helpers.tools import common, load_tool


def test_the_start_line_prints_the_thread_count(tmp_path, folder_data, capsys):
    torch.set_num_threads(1)
    assert load_tool("train").main(common(folder_data, tmp_path, "threads")) == 0
    start = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("output: "))
    assert "| device cpu x1 | threads 1 |" in start
