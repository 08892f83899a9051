"""What the live table of `mpt run` shows while stages run."""

from __future__ import annotations

import time

from flows.progress import LiveTable, epoch_detail


def test_the_clock_in_the_title_keeps_running_while_a_stage_is_long():
    table = LiveTable()
    table.stage("retail", "searching", "trial 1/3 done, best validation 0.612")
    first = table.__rich__().title  # what Live renders at each refresh
    time.sleep(1.1)
    assert table.__rich__().title != first


def test_progress_rows_read_as_embedding_or_epochs():
    embedding = {"domain": "big", "stage": "embedding", "done": 320, "total": 2000, "rate": 61.7}
    assert epoch_detail(embedding) == "320/2000 images, 62 images/s"
    epoch = {"domain": "retail", "epoch": 3, "epochs": 15, "val_accuracy": 0.8125}
    assert epoch_detail(epoch) == "epoch 3/15, val_accuracy 0.812"
