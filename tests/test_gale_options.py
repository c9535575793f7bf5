"""The Gale et al. recipe options: no weight decay on BatchNorm parameters and biases, and the
last BatchNorm scale of each residual block started at zero. Off by default (ids unchanged)."""

import torch

from conftest import BASE
from runners.models import build
from runners.optim import make_optimizer
from studyspec.spec.train import Optimizer
from studyspec.load import loads
from studyspec.plan import build as plan

RUNS = "runs:\n  d: {regime: dense}\n"


def test_defaults_leave_ids_unchanged():
    base = plan(loads(BASE + RUNS, "s.yaml").study)
    explicit = BASE.replace("train: {steps: 60, eval_every: 20}",
                            "train: {steps: 60, eval_every: 20, optimizer: {weight_decay_on: all}}")
    assert list(plan(loads(explicit + RUNS, "s.yaml").study).jobs) == list(base.jobs)
    on = explicit.replace("weight_decay_on: all", "weight_decay_on: weights")
    assert list(plan(loads(on + RUNS, "s.yaml").study).jobs) != list(base.jobs)


def _models(cfg, shape):
    cfg = dict(cfg)
    widths = cfg.pop("widths", None)  # narrow layers (small_dense's widths) keep the test fast
    torch.manual_seed(0)
    plain = build(cfg, shape, 10, widths)
    torch.manual_seed(0)
    zeroed = build(dict(cfg, zero_init_residual=True), shape, 10, widths)
    return dict(plain.named_parameters()), dict(zeroed.named_parameters())


def test_zero_init_residual_zeroes_the_last_bn_of_every_block_only():
    for cfg, last, blocks in [({"arch": "torchvision_resnet", "depth": 50, "widths": [8, 4, 4, 4, 4]}, "bn3", 16),
                              ({"arch": "torchvision_resnet", "depth": 18, "widths": [8, 4, 4, 4, 4]}, "bn2", 8),
                              ({"arch": "resnet", "depth": 8, "width": 4}, "bn2", 3)]:
        plain, zeroed = _models(cfg, (3, 32, 32))
        hit = [n for n in plain if n.endswith(f"{last}.weight")]
        assert len(hit) == blocks, (cfg, hit)
        for name, p in plain.items():
            if name in hit:
                assert (p == 1).all() and (zeroed[name] == 0).all()
            else:  # the same seed gives the same other weights: no random numbers drawn
                assert torch.equal(p, zeroed[name]), name


def test_weight_decay_only_on_weights():
    torch.manual_seed(0)
    net = build({"arch": "resnet", "depth": 8, "width": 4}, (3, 8, 8), 10)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    opt = make_optimizer(net.parameters(), Optimizer(name="sgd", lr=0.1, weight_decay=0.5, weight_decay_on="weights"))
    for p in net.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # zero gradients: only weight decay moves a parameter
    for n, p in net.named_parameters():
        if p.dim() >= 2:
            assert torch.allclose(p, before[n] * 0.95), n
        else:  # BatchNorm scales and shifts, the classifier's bias
            assert torch.equal(p, before[n]), n
    assert any(p.dim() < 2 for p in net.parameters())
