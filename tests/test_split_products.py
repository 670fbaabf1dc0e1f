"""parallel.matmul: large products split over the threads of split_products, by rows or by columns."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from mlpcli.parallel import matmul, split_products


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
