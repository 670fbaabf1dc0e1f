"""parallel.matmul: large products split over the threads of split_products, by rows or by columns; and
parallel.elementwise: in-place updates block by block, the blocks split over the same threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_info

from mlpcli import parallel
from mlpcli.config import OptimConfig
from mlpcli.nn.optim import OPTIMIZERS
from mlpcli.parallel import elementwise, matmul, split_products


@pytest.mark.parametrize("m, k, n", [(200, 300, 500), (500, 300, 200), (3, 4, 5), (1001, 17, 999)])
def test_split_products_equal_the_whole_product(m, k, n):
    rng = np.random.default_rng(m)
    a, b = rng.standard_normal((m, k)), rng.standard_normal((k, n))
    with split_products(3):
        # every BLAS loaded (numpy's, and scipy's once scikit-learn is imported) on one thread
        assert {info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"} == {1}
        split = matmul(a, b)
        into = np.full((m, n), np.nan)
        matmul(a, b, out=into)
        transposed = matmul(b.T, a.T)
    np.testing.assert_allclose(split, a @ b, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(into, split)
    np.testing.assert_allclose(transposed, (a @ b).T, rtol=1e-12, atol=1e-12)


def test_outside_split_products_matmul_is_numpys():
    a, b = np.ones((400, 300)), np.ones((300, 200))
    np.testing.assert_array_equal(matmul(a, b), np.matmul(a, b))


def _momentum_like(v: np.ndarray, grad: np.ndarray, param: np.ndarray) -> None:
    v *= 0.9
    v += grad
    param -= 0.01 * v


@settings(max_examples=60, deadline=None)
@given(shape=st.lists(st.integers(1, 40), min_size=1, max_size=2), block=st.integers(1, 200),
       threads=st.integers(1, 3), seed=st.integers(0, 2**32 - 1))
def test_elementwise_blocks_give_the_whole_arrays_update_bit_for_bit(shape, block, threads, seed):
    rng = np.random.default_rng(seed)
    v, grad, param = (rng.standard_normal(shape).astype(np.float32) for _ in range(3))
    whole = [v.copy(), grad.copy(), param.copy()]
    _momentum_like(*whole)
    touched = np.zeros(shape, np.int64)
    workers = set()

    def count(part: np.ndarray) -> None:
        part += 1
        workers.add(threading.get_ident())

    saved, parallel.ELEMENTWISE_BLOCK = parallel.ELEMENTWISE_BLOCK, block
    try:
        with split_products(threads):
            elementwise(_momentum_like, v, grad, param)
            elementwise(count, touched)
    finally:
        parallel.ELEMENTWISE_BLOCK = saved
    for got, want in zip([v, grad, param], whole):
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(touched, 1)                 # every element updated once
    blocks = -(-shape[0] // max(1, block * shape[0] // touched.size))
    assert len(workers) <= min(threads, blocks)
    if threads > 1 and blocks > 1:
        assert threading.get_ident() not in workers           # on the threads of split_products


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizers_step_the_same_in_blocks_on_threads_as_whole(name, monkeypatch):
    rng = np.random.default_rng(1)
    start = {"W": rng.standard_normal((37, 11)).astype(np.float32), "b": rng.standard_normal(11).astype(np.float32)}
    grads = [{key: rng.standard_normal(p.shape).astype(np.float32) for key, p in start.items()} for _ in range(3)]

    def stepped(threads: int) -> dict:
        params = {key: p.copy() for key, p in start.items()}
        optimizer = OPTIMIZERS[name](params, OptimConfig(name=name))
        with split_products(threads):
            for grad in grads:
                optimizer.step(grad, lr=0.05)
        return {**params, **optimizer.state()}

    whole = stepped(1)
    monkeypatch.setattr(parallel, "ELEMENTWISE_BLOCK", 20)       # 8 blocks of W, 2 of b
    for key, value in stepped(2).items():
        np.testing.assert_array_equal(value, whole[key], err_msg=key)
