"""Lab 3's references (TWINS; test_every_lab.py runs every check with them) and its particular cases: the
functions permutation_gap receives behave as their names say. (The mistakes of the table and the mutants are in
test_mutants.py.)"""
import pytest
import torch

from labsupport import positional as ref
from labsupport.checks import lab03 as L
from labsupport.checks.core import CheckFailed


def permutation_gap(f, x, perm):
    return (f(x[:, perm]) - f(x)[:, perm]).abs().max().item()


TWINS = {"permutation_gap": permutation_gap, "sinusoidal_encoding": ref.sinusoidal_encoding,
         "offset_matrix": ref.offset_rotation, "learned_positions": ref.LearnedPositionalEncoding,
         "sinusoidal_2d": ref.sinusoidal_encoding_2d}


def test_a_module_whose_forward_is_not_implemented_is_explained():
    class Stub(torch.nn.Module):
        def __init__(self, max_len, d_model):
            super().__init__()
            self.embedding = torch.nn.Embedding(max_len, d_model)

        def forward(self, x):
            raise NotImplementedError()

    with pytest.raises(CheckFailed, match="`LearnedPositions.forward` is not implemented yet"):
        L.check_learned_positions(Stub)


def test_a_class_that_is_not_a_module_is_named():
    class NotAModule:
        def __init__(self, max_len, d_model):
            pass

    with pytest.raises(CheckFailed, match="should build an nn.Module"):
        L.check_learned_positions(NotAModule)


def test_the_fixtures_are_what_their_names_say():
    x, perm = torch.randn(2, 6, 8), torch.tensor([1, 2, 3, 4, 5, 0])
    assert permutation_gap(L.fixture_function("double"), x, perm) == 0
    assert permutation_gap(L.fixture_function("running_sum"), x, perm) > 1e-2
    assert permutation_gap(L.fixture_function("negated_running_sum"), x, perm) == pytest.approx(
        permutation_gap(L.fixture_function("running_sum"), x, perm))
    f = L.SelfAttentionFixture(3, 8, 2)
    assert permutation_gap(f, x, perm) < 1e-5                                   # self-attention is equivariant
    assert torch.equal(f(x), L.SelfAttentionFixture(3, 8, 2)(x))                 # the seed fixes the weights
    assert not torch.equal(f(x), L.SelfAttentionFixture(4, 8, 2)(x))
    assert permutation_gap(L.SelfAttentionFixture(3, 8, 2, positions=ref.sinusoidal_encoding(6, 8)), x, perm) > 1e-2
