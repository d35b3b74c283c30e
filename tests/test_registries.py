"""One place per choice: a new loss, D head or family entry needs no other edit.

A loss defined here (one class, one line in ``ADVERSARIAL``) and a D head (one class,
one line in ``HEADS``) train through the CLI; the config's choices are read from the
registries; the loop's public hook sees every iteration and can stop the run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from trainer import train
from trainer.config import ENUMS, ConfigError, load_config
from trainer.families import FAMILIES, family_for_labels
from trainer.losses import ADVERSARIAL, AdversarialLoss
from trainer.models.conditional import HEADS, TRUNKS, Head
from trainer.runs import latest_checkpoint, load_generator

TINY = ["data.size=32", "batch_size=8", "model.g_ch=16", "model.d_ch=16", "log_every=2",
        "sample_every=4", "ckpt_every=4", "n_samples=16", "mixed_precision=no"]


class SquaredHinge(AdversarialLoss):
    """A loss the project does not have: hinge, squared."""

    def d_real(self, scores):
        return F.relu(1 - scores.float()).square().mean()

    def d_fake(self, scores):
        return F.relu(1 + scores.float()).square().mean()

    def g_loss(self, fake_scores):
        return -fake_scores.float().mean()


class PooledProjectionHead(Head):
    """A head the project does not have: projection onto globally pooled features."""

    def __init__(self, in_ch, group_sizes, cfg, bias):
        super().__init__(in_ch, group_sizes, cfg, bias)
        self.out = nn.Conv2d(in_ch, 1, 4, 1, 0, bias=bias)
        self.embed = nn.Linear(sum(group_sizes), in_ch, bias=False)

    def forward(self, h, tags):
        inner = (self.embed(tags.to(h.dtype)) * h.mean(dim=(2, 3))).sum(dim=1)
        return self.out(h).flatten() + inner, None


def train_cgan(avatar_dir: Path, run: Path, *overrides: str, callbacks=()) -> int:
    return train.main(["--config", "cgan_avatars", "--run-dir", str(run),
                       f"data.path={avatar_dir}", "steps=4", *TINY, *overrides],
                      callbacks=callbacks)


def finite_rows(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(torch.isfinite(torch.tensor(r["D/loss"])) for r in rows)
    return rows


def test_choices_are_read_from_the_registries(monkeypatch):
    assert ENUMS["loss.adv"] == tuple(ADVERSARIAL)
    assert ENUMS["model.cond"] == tuple(HEADS)
    assert ENUMS["recipe"] == tuple(FAMILIES)
    assert set(TRUNKS) < set(ENUMS["model.arch"]) and "stargan" in ENUMS["model.arch"]
    with pytest.raises(ConfigError, match="loss.adv"):
        load_config(None, ["loss.adv=squared_hinge"])
    monkeypatch.setitem(ADVERSARIAL, "squared_hinge", SquaredHinge())
    assert load_config(None, ["loss.adv=squared_hinge"]).loss.adv == "squared_hinge"
    assert family_for_labels(None).name == "gan"


def test_a_new_adversarial_loss_trains_through_the_cli(avatar_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TAGFACE_NO_BAR", "1")
    monkeypatch.setitem(ADVERSARIAL, "squared_hinge", SquaredHinge())  # the one registry line
    run = tmp_path / "loss"
    assert train_cgan(avatar_dir, run, "loss.adv=squared_hinge") == 0
    assert "adv: squared_hinge" in (run / "config.yaml").read_text()
    finite_rows(run)
    assert latest_checkpoint(run).name == "step_00000004"


def test_a_new_d_head_trains_through_the_cli(avatar_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TAGFACE_NO_BAR", "1")
    monkeypatch.setitem(HEADS, "pooled_projection", PooledProjectionHead)  # the one line
    run = tmp_path / "head"
    assert train_cgan(avatar_dir, run, "model.cond=pooled_projection") == 0
    rows = finite_rows(run)
    assert "D/d_wrong" in rows[-1], "a head that scores tags gets the matching-aware case"
    d_state = load_file(latest_checkpoint(run) / "model_1.safetensors")
    assert any(k.startswith("head.embed") for k in d_state), sorted(d_state)[:5]
    g = load_generator(run)
    assert g.model.n_cond == g.vocab.n_tags, "the new head is conditional: G takes tags"


def test_callbacks_see_every_iteration_and_can_stop_the_run(avatar_dir, tmp_path, monkeypatch):
    from trainer.loop import Callback

    monkeypatch.setenv("TAGFACE_NO_BAR", "1")
    seen: list[tuple[str, int]] = []

    class StopAtTwo(Callback):
        def on_step_start(self, trainer):
            seen.append(("start", trainer.state.step))
            if trainer.state.step == 2:
                trainer.request_stop()

        def on_step_end(self, trainer):
            seen.append(("end", trainer.state.step))

    run = tmp_path / "hooked"
    assert train_cgan(avatar_dir, run, "steps=8", callbacks=[StopAtTwo()]) == 0
    assert seen == [("start", 0), ("end", 1), ("start", 1), ("end", 2), ("start", 2)]
    assert (run / "preempted").read_text().strip() == "3"  # checkpointed after that step
    assert latest_checkpoint(run).name == "step_00000003"
