"""Helpers for the client tests: independent numpy answers and exact float32 comparison."""
import numpy as np

# Values whose float32 bits must survive every path unchanged: signed zero, the smallest subnormal,
# the largest finite float, numbers that need 9 significant digits, and so on.
SPECIAL_VALUES = np.array(
    [0.0, -0.0, 1.0, -1.0, 1e-45, -1e-45, 1.1754942e-38, 1.17549435e-38, 3.4028235e38, -3.4028235e38,
     0.1, 1.0 / 3.0, 16777217.0, 123456.789, 1e-7, 2.0 ** -126, 0.30000001192092896, 6.02214076e23],
    dtype=np.float32)


def as_np(value):
    """pgvector-python's loaders return pgvector.Vector (0.5) or numpy arrays (0.4 and older)."""
    if hasattr(value, "to_numpy"):
        return value.to_numpy()
    return np.asarray(value, dtype=np.float32)


def same_bits(a, b):
    a = np.ascontiguousarray(a, dtype=np.float32)
    b = np.ascontiguousarray(b, dtype=np.float32)
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


# Distances as pgvector defines them, in float64 from the float32 data.
def distances(data, q, op):
    x = np.asarray(data, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if op == "<->":
        return np.sqrt(((x - q) ** 2).sum(axis=1))
    if op == "<#>":
        return -(x @ q)
    if op == "<=>":
        return 1.0 - (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
    if op == "<+>":
        return np.abs(x - q).sum(axis=1)
    raise ValueError(op)


def brute_force(ids, data, q, op, k):
    """The ids of the k nearest rows under op, checking that the order is unambiguous: two distances
    closer than float32 arithmetic can tell apart would let a correct server return either order."""
    d = distances(data, q, op)
    order = np.argsort(d, kind="stable")
    assert unambiguous(d[order[: k + 1]]), f"test data has near-ties for {op}; change the seed"
    return [int(ids[i]) for i in order[:k]]


def unambiguous(sorted_distances):
    scale = max(1.0, float(np.abs(sorted_distances).max()))
    return np.diff(sorted_distances).min() > 1e-5 * scale


def pick_queries(rng, data, n, k, ops=("<->", "<#>", "<=>", "<+>")):
    """n random query vectors whose k nearest rows come in an unambiguous order under every operator."""
    queries = []
    while len(queries) < n:
        q = rng.standard_normal(data.shape[1]).astype(np.float32)
        if all(unambiguous(np.sort(distances(data, q, op))[: k + 1]) for op in ops):
            queries.append(q)
    return np.array(queries)
