"""The seed report's findings as claims, each judged by one written rule from a sweep's paired differences.

Effect of a link ``a vs b``: the mean over seeds and val crops of (final val PSNR of ``a`` - that of ``b``) on the
same crop and seed, with a two-way bootstrap 95% interval (seeds and crops resampled). Verdict rule, applied by
``verdict`` and ``judge`` (never by hand):

- ``a > b`` claims: **reproduced** when the interval lies above 0, **contradicted** when it lies below 0,
  **inconclusive** otherwise;
- ``a ≈ b`` claims: **reproduced** when the interval lies inside (-margin, +margin), **contradicted** when it lies
  wholly outside that band on one side, **inconclusive** otherwise (the margin is fixed before a sweep runs:
  ``EQUIVALENCE_MARGIN_DB``);
- a chain (``a > b > c``) is reproduced when every link is, contradicted when any link is, else inconclusive;
- the discriminator claim compares D's lead (mean D(real) - D(generated) over the last quarter of training) of
  ``a`` and ``b`` per seed: reproduced when ``a``'s lead is larger with the interval above 0;
- **missing** when a run a link needs has no finished seed with per-crop val metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ctx_inpaint.reporting.seeds import Experiment, gap_difference, paired_difference

EQUIVALENCE_MARGIN_DB = 0.5
REPRODUCED, CONTRADICTED, INCONCLUSIVE, MISSING = "reproduced", "contradicted", "inconclusive", "missing run"


@dataclass(frozen=True)
class Claim:
    """One finding: ``kind`` is ``greater`` (each link's a above b), ``equivalent`` (a about b) or ``d_wins``
    (a's discriminator leads further than b's); ``links`` are (a, b) experiment names."""

    finding: str
    kind: str
    links: tuple[tuple[str, str], ...]


CLAIMS: tuple[Claim, ...] = (
    Claim(
        "PSNR rises with the L2 weight (0 < 0.5 < 0.9 < 0.999)",
        "greater",
        (("l2_05", "l2_0"), ("l2_09", "l2_05"), ("l2_0999", "l2_09")),
    ),
    Claim("L2 weight 0.9999 is about 0.999", "equivalent", (("l2_09999", "l2_0999"),)),
    Claim("L2 only scores above L2 + adversarial (PSNR)", "greater", (("l2_1", "l2_0999"),)),
    Claim(
        "The AlexNet encoder (L2 only) is below the paper encoder (L2 only)",
        "greater",
        (("l2_1", "alexnet_l2"),),
    ),
    Claim("The channel-wise FC helps", "greater", (("cwfc", "l2_0999"),)),
    Claim("L1 is about L2", "equivalent", (("l1_0999", "l2_0999"),)),
    Claim("SGD is below Adam", "greater", (("l2_0999", "sgd"),)),
    Claim(
        "With AlexNet + discriminator the discriminator does not converge (it wins, more than with the paper encoder)",
        "d_wins",
        (("alexnet_adv", "l2_0999"),),
    ),
    Claim(
        "The lr-scheduler run (lr 0.01, gamma 0.5) stays below the default",
        "greater",
        (("l2_0999", "lr_scheduler"),),
    ),
    Claim("Random patches are about the centre hole", "equivalent", (("random_patches", "l2_0999"),)),
    Claim("The extra layer is about the baseline", "equivalent", (("extra_layer", "l2_0999"),)),
)


def verdict(kind: str, lo: float, hi: float, margin: float = EQUIVALENCE_MARGIN_DB) -> str:
    """The rule for one link's interval [lo, hi] (see the module docstring)."""
    if kind in ("greater", "d_wins"):
        return REPRODUCED if lo > 0 else CONTRADICTED if hi < 0 else INCONCLUSIVE
    if kind == "equivalent":
        if -margin < lo and hi < margin:
            return REPRODUCED
        return CONTRADICTED if lo > margin or hi < -margin else INCONCLUSIVE
    raise ValueError(f"claim kind: expected greater, equivalent or d_wins, got {kind!r}")


def combine(verdicts: list[str]) -> str:
    """A claim of several links: missing if any link is, contradicted if any is, reproduced if all are."""
    if MISSING in verdicts:
        return MISSING
    if CONTRADICTED in verdicts:
        return CONTRADICTED
    return REPRODUCED if all(v == REPRODUCED for v in verdicts) else INCONCLUSIVE


@dataclass
class Link:
    a: str
    b: str
    effect: dict | None  # two_way_bootstrap's result (+ "a", "b" gaps for d_wins), None when missing
    verdict: str


@dataclass
class Judged:
    claim: Claim
    links: list[Link]
    verdict: str


def judge(
    claim: Claim, experiments: Mapping[str, Experiment], margin: float = EQUIVALENCE_MARGIN_DB
) -> Judged:
    links = []
    for a, b in claim.links:
        ea, eb = experiments.get(a), experiments.get(b)
        effect = None
        if ea is not None and eb is not None:
            effect = gap_difference(ea, eb) if claim.kind == "d_wins" else paired_difference(ea, eb)
        v = MISSING if effect is None else verdict(claim.kind, effect["lo"], effect["hi"], margin)
        links.append(Link(a, b, effect, v))
    return Judged(claim, links, combine([link.verdict for link in links]))


def judge_all(experiments: Mapping[str, Experiment], margin: float = EQUIVALENCE_MARGIN_DB) -> list[Judged]:
    return [judge(claim, experiments, margin) for claim in CLAIMS]
