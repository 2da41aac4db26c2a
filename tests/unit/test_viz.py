"""labsupport.viz: heat maps, curves, explorers that degrade to static figures."""
import matplotlib

matplotlib.use("agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from labsupport import viz  # noqa: E402


def test_heatmap_labels_and_values():
    w = torch.softmax(torch.randn(3, 4), -1)
    ax = viz.attention_heatmap(w, ["a", "b", "c", "d"], ["x", "y", "z"], title="t")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c", "d"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["x", "y", "z"]
    assert len(ax.texts) == 12 and ax.texts[0].get_text() == f"{w[0, 0].item():.2f}"
    np.testing.assert_allclose(ax.images[0].get_array(), w.numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="2-D"):
        viz.attention_heatmap(torch.zeros(2, 3, 3))
    plt.close("all")


def test_heads_and_curves_and_static_explorer(monkeypatch):
    fig = viz.attention_heads(torch.softmax(torch.randn(3, 4, 4), -1), list("abcd"))
    assert sum(1 for ax in fig.axes if ax.images) == 3
    ax = viz.plot_curves({"train": [3, 2, 1], "val": [(0, 3.0), (2, 1.5)]}, hline=(2.3, "baseline"))
    assert len(ax.lines) == 3
    monkeypatch.setenv(viz.STATIC_ENV, "1")
    calls = []
    assert viz.explorer(lambda d, t: calls.append((d, t)), {"d": [1, 2, 3]}, d=(1, 8), t=0.5) is None
    assert calls == [(1, 0.5), (2, 0.5), (3, 0.5)]
    monkeypatch.setenv(viz.STATIC_ENV, "0")
    w = viz.explorer(lambda d, t: calls.append((d, t)), {"d": [1]}, d=(1, 8), t=0.5)
    assert type(w).__name__ == "interactive"
    plt.close("all")
