"""Checks that the store and the FAISS index read from one folder belong together and to
the corpus its manifest records. Each failure is one `IndexFormatError` line; run on every
load, before the first search could answer from mismatched files."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from rankact.retrieval.dense_index import DenseIndex
from rankact.retrieval.docstore import DocStore
from rankact.retrieval.errors import IndexFormatError
from rankact.retrieval.manifest import INDEX_FILE, MANIFEST, STORE_FILE, Manifest

SPOT_CHECKS = 64  # vectors compared between the FAISS file and the store (cheap at any size)


def check_loaded(folder: Path, manifest: Manifest, store: DocStore, dense: DenseIndex) -> None:
    dim = manifest.embedder.dimension
    problem = store.problem(dim)
    if problem:
        raise IndexFormatError(f"{folder} is damaged: {STORE_FILE} has {problem}")
    corpus = manifest.corpus
    if corpus is not None and (corpus.fingerprint != store.fingerprint() or corpus.documents != store.count_documents()
                               or corpus.chunks != store.count_chunks()):
        raise IndexFormatError(f"{folder} is damaged: {STORE_FILE} holds another corpus than {MANIFEST} records; "
                               f"rebuild the index")
    in_index, in_store = np.sort(dense.ids()), store.chunk_ids()
    if not np.array_equal(in_index, in_store):
        raise IndexFormatError(f"{folder} is damaged: index and store disagree: {len(in_index)} vectors vs "
                               f"{len(in_store)} chunks")
    if len(in_store):  # one probe search: a crafted file (an IVF with nprobe 0, ...) fails here, not later
        ids, _ = dense.search(store.vectors(in_store[:1], dim)[0], k=min(10, len(in_store)))
        if not np.isin(ids, in_store).all():
            raise IndexFormatError(f"{folder} is damaged: {INDEX_FILE} answers with chunk ids the store does not hold")
    if dense.kind == "ivf" or len(in_store) == 0:
        return  # IVF cannot give vectors back without a direct map; the checksums cover it
    picks = in_store[np.linspace(0, len(in_store) - 1, num=min(SPOT_CHECKS, len(in_store))).astype(int)]
    from_index = np.stack([dense.index.reconstruct(int(i)) for i in picks])
    if not np.allclose(from_index, store.vectors(picks, dim), atol=1e-4):
        raise IndexFormatError(f"{folder} is damaged: {INDEX_FILE} and {STORE_FILE} hold different vectors for the "
                               f"same chunk ids (files from different indexes); rebuild the index")
