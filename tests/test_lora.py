"""LoRA deltas: bytes, checks before use, peft interop, merges and the merge policy."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("peft")

from edgeswarm.learning import digits
from edgeswarm.learning.lora import (
    AdapterSpec,
    Delta,
    DeltaError,
    adapt,
    apply,
    decode,
    delta_of,
    digest,
    encode,
    save_peft,
    train,
)
from edgeswarm.learning.lora_merge import (
    exact_update,
    fedavg_ab,
    ffa,
    flora,
    merge_error,
    normalise,
    select_by_validation,
)

BASE = digits.load_base()
VERSION = digits.base_version()


DEFAULT_SPEC = AdapterSpec()


def trained(node: int, spec: AdapterSpec = DEFAULT_SPEC, epochs: int = 20) -> Delta:
    data, _ = digits.node_data(node, 10)
    model = adapt(BASE, spec)
    train(model, data.x, data.y, epochs=epochs)
    return delta_of(model, base_id=digits.BASE_ID, base_version=VERSION)


def random_delta(rank: int, seed: int, modules=("fc2", "out")) -> Delta:
    g = torch.Generator().manual_seed(seed)
    shapes = {"fc1": (128, 64), "fc2": (128, 128), "out": (10, 128)}
    a = {m: torch.randn(rank, shapes[m][1], generator=g) for m in modules}
    b = {m: torch.randn(shapes[m][0], rank, generator=g) for m in modules}
    return Delta(rank, 2.0 * rank, a, b, digits.BASE_ID, VERSION)


def test_shipped_base_is_the_one_adapters_are_checked_against():
    assert len(VERSION) == 64 and digits.accuracy(BASE, digits.public_data()) > 0.95


def test_delta_bytes_roundtrip_deterministically_and_the_base_is_untouched():
    before = copy.deepcopy(BASE.state_dict())
    delta = trained(1)
    assert all(torch.equal(v, BASE.state_dict()[k]) for k, v in before.items())
    data = encode(delta)
    assert encode(delta) == data and len(digest(data)) == 64
    back = decode(data, BASE, base_id=digits.BASE_ID, base_version=VERSION)
    assert back.rank == delta.rank and torch.equal(back.b["out"], delta.b["out"])
    half = decode(encode(delta, dtype=torch.float16), BASE, base_id=digits.BASE_ID, base_version=VERSION)
    assert len(encode(delta, dtype=torch.float16)) < len(data)
    assert torch.allclose(half.update("out"), delta.update("out"), atol=1e-2)


def test_saved_adapter_loads_with_peft_from_pretrained_and_computes_the_same(tmp_path):
    from peft import PeftModel

    delta = trained(2)
    save_peft(delta, tmp_path / "adapter")
    loaded = PeftModel.from_pretrained(copy.deepcopy(BASE), str(tmp_path / "adapter")).eval()
    x = digits.public_data().x[:32]
    with torch.no_grad():
        assert torch.allclose(loaded(x), apply(BASE, delta)(x), atol=1e-5)


@pytest.mark.parametrize(
    "mutate, reason",
    [
        (lambda d: d[:20], "header"),
        (lambda d: b"\x00" * 8 + d[8:], "header"),
        (lambda d: (10**9).to_bytes(8, "little") + d[8:], "header"),
    ],
)
def test_malformed_bytes_are_refused_before_any_tensor_is_read(mutate, reason):
    with pytest.raises(DeltaError):
        decode(mutate(encode(random_delta(4, 0))), BASE, base_id=digits.BASE_ID, base_version=VERSION)


def test_incompatible_deltas_are_refused_with_a_reason():
    delta = random_delta(4, 0)
    with pytest.raises(DeltaError, match="not this node's"):
        decode(encode(delta), BASE, base_id=digits.BASE_ID, base_version="0" * 64)
    wrong_shape = Delta(4, 8.0, {"out": torch.zeros(4, 64)}, {"out": torch.zeros(10, 4)}, digits.BASE_ID, VERSION)
    with pytest.raises(DeltaError, match="expected a float"):
        decode(encode(wrong_shape), BASE, base_id=digits.BASE_ID, base_version=VERSION)
    nowhere = Delta(4, 8.0, {"head": torch.zeros(4, 128)}, {"head": torch.zeros(10, 4)}, digits.BASE_ID, VERSION)
    with pytest.raises(DeltaError, match="no linear layer"):
        decode(encode(nowhere), BASE, base_id=digits.BASE_ID, base_version=VERSION)
    poisoned = Delta(
        4, 8.0, {"out": torch.full((4, 128), float("nan"))}, {"out": torch.zeros(10, 4)}, digits.BASE_ID, VERSION
    )
    with pytest.raises(DeltaError, match="NaN"):
        decode(encode(poisoned), BASE, base_id=digits.BASE_ID, base_version=VERSION)
    with pytest.raises(DeltaError, match="exceeds"):
        decode(encode(delta), BASE, base_id=digits.BASE_ID, base_version=VERSION, max_bytes=100)


def test_flora_stacking_is_exact_for_mixed_ranks_and_weights():
    deltas = [random_delta(4, 1), random_delta(8, 2), random_delta(16, 3)]
    weights = normalise([100, 300, 600])
    merged = flora(deltas, weights)
    assert merged.rank == 28
    assert merge_error(merged, deltas, weights) < 1e-5
    target = exact_update(deltas, weights)["out"]
    assert torch.allclose(merged.update("out"), target, atol=1e-5)


def test_ffa_averaging_b_over_a_shared_frozen_a_is_exact_and_needs_the_same_a():
    spec = AdapterSpec(rank=4, alpha=8.0, frozen_a_seed=7)
    deltas = [trained(n, spec, epochs=10) for n in (0, 1, 2)]
    assert torch.equal(deltas[0].a["out"], deltas[1].a["out"])  # A never trained
    weights = normalise([1, 2, 3])
    assert merge_error(ffa(deltas, weights), deltas, weights) < 1e-5
    with pytest.raises(DeltaError, match="same frozen A"):
        ffa([deltas[0], random_delta(4, 9, modules=("out",))], [0.5, 0.5])


def test_averaging_a_and_b_separately_is_inexact_and_says_by_how_much():
    deltas = [random_delta(4, 1), random_delta(4, 2)]
    error = merge_error(fedavg_ab(deltas, [0.5, 0.5]), deltas, [0.5, 0.5])
    assert 0.1 < error < 2.0
    with pytest.raises(DeltaError, match="one rank"):
        fedavg_ab([random_delta(4, 1), random_delta(8, 2)], [0.5, 0.5])


def test_merge_policy_keeps_only_helpful_candidates_best_first():
    candidates = [random_delta(2, s) for s in range(5)]
    scores = dict(zip(map(id, candidates), [0.1, -0.2, 0.3, 0.0, 0.05]))
    kept = select_by_validation(candidates, lambda d: scores[id(d)], threshold=0.0, top_k=3)
    assert [s for _, s in kept] == [0.3, 0.1, 0.05]
    assert select_by_validation(candidates, lambda d: -1.0, threshold=0.0) == []
    with pytest.raises(ValueError):
        normalise([0, 0])
